from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.openid_start, name="login"),
    path("openid/return/", views.openid_return, name="openid_return"),
    path("register/", views.register, name="register"),
    path("settings/", views.account_settings, name="settings"),
    path("settings/link/", views.link_another, name="link_another"),
    path("settings/unlink/", views.unlink, name="unlink"),
    path("logout/", views.logout_view, name="logout"),
]
