"""Django settings of the test site: in-memory SQLite, database sessions, the OpenID backend."""

SECRET_KEY = "openid-plugins-django tests only"
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "openid_plugins_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "openid_plugins_django.auth.Backend",
]
ROOT_URLCONF = "site_urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test OP is on 127.0.0.1, which the SSRF guard refuses by default: turned off here
# explicitly (the relying party logs a warning).
OPENID_PLUGINS = {
    "store": "memory://",
    "queue": "memory://",
    "fetch_block_private_addresses": False,
}
