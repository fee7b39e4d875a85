"""Django authentication backend for OpenID (seed 004's ``openid2rp.django``, on openid-plugins).

Add ``"openid_plugins_django"`` to ``INSTALLED_APPS`` and ``"openid_plugins_django.auth.Backend"``
to ``AUTHENTICATION_BACKENDS``; the API is in :mod:`openid_plugins_django.auth`.
"""
