"""A model that needs nothing installed: it doubles its input."""


class Doubler:
    def __init__(self, factor=2):
        self.factor = factor

    def predict(self, xs):
        return [self.factor * x for x in xs]
