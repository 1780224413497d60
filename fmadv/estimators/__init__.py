"""Estimators: the FM classifier and the image classifier, scikit-learn style."""
