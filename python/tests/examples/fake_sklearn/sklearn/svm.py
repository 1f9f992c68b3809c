class SVR:
    def __repr__(self) -> str:
        return "SVR()"
