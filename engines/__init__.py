"""What every query-based model of FastInst Studio shares with the studio, training and the CLIs.

    from engines.load import load_predictor
    loaded = load_predictor("model.safetensors", model="queryinst")   # or None: whatever the file holds
    pred = loaded.predictor.predict("street.jpg")                     # engines.contract.Prediction
    pred.masks, pred.scores, pred.classes, pred.boxes, pred.query_indices
    pred.explanation.layer_masks(int(pred.query_indices[0]))          # the query's mask after every layer

``contract`` holds the types (importing no model); ``load`` knows the models (``MODELS``).
"""
