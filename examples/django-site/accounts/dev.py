"""What the development server tells the login page: the development OP's identity URLs."""

#: Set by ``manage.py devserver`` once the development OP listens.
identity_urls: list[str] = []


def hint() -> list[str]:
    return identity_urls
