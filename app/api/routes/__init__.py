"""HTTP routes, one module per resource; thin: validate, call the model, shape the answer."""
