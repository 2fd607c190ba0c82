"""Accounts: registration, log-in, password reset, profile and API tokens.

Django auth and DRF tokens do the work; this module adds what they leave to
the site: log-in and password-reset attempts are rate-limited per account (or
e-mail address) and per client address in the shared cache
(django-ratelimit), and registration never says whether an e-mail address
already has an account.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_ratelimit.core import get_usage
from rest_framework.authtoken.models import Token


class RegisterForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="for password resets")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self):
        # Several accounts may share an address (a reset mails each of them): telling
        # a visitor that an address is taken would confirm that it has an account.
        return self.cleaned_data["email"].lower()


def _tell_the_address_owner(user: User) -> None:
    """Let the owner of an address know that another account now names it."""
    others = User.objects.filter(email__iexact=user.email).exclude(pk=user.pk)
    if others.exists():
        send_mail(
            "A new MoECollab Hub account names your e-mail address",
            f"Someone registered the account {user.username!r} with this address. If it was "
            "not you, you can ignore this message: that account cannot reset your password.",
            None,
            [user.email],
        )


def _field(name: str):
    return lambda group, request: (request.POST.get(name) or "").strip().lower()


def over_limit(request, scope: str, *, per: str, key) -> int:
    """Count this POST against `scope`'s limit `per` one key; the seconds left in the
    window when the limit is passed, else 0. Limits are settings, read at each call."""
    usage = get_usage(
        request,
        group=f"{scope}-{per}",
        key=key,
        rate=settings.MOECOLLAB_RATE_LIMITS[f"{scope}_per_{per}"],
        method="POST",
        increment=True,
    )
    return max(1, usage["time_left"]) if usage and usage["should_limit"] else 0


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def log_in(request):
    """Django's log-in, at most so many tries per account and per client address: once
    over, even the right password is refused until the window ends (429)."""
    if request.method == "POST":
        wait = max(
            over_limit(request, "login", per="account", key=_field("username")),
            over_limit(request, "login", per="address", key="ip"),
        )
        if wait:
            form = auth_views.AuthenticationForm(request, data=request.POST)
            form.errors.clear()
            form.add_error(
                None,
                "Too many log-in attempts for this account or from this address; "
                f"try again in {_minutes(wait)}.",
            )
            response = render(
                request,
                "registration/login.html",
                {"form": form, "next": request.POST.get("next", "")},
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
    return auth_views.LoginView.as_view()(request)


def password_reset(request):
    """Django's password reset, rate-limited: per client address a 429; per e-mail
    address the same "sent" page as always, with no more mail sent to it."""
    if request.method == "POST":
        wait = over_limit(request, "password_reset", per="address", key="ip")
        if wait:
            message = (
                "Too many password reset requests from this address; "
                f"try again in {_minutes(wait)}."
            )
            response = render(
                request, "registration/limited.html", {"message": message}, status=429
            )
            response["Retry-After"] = str(wait)
            return response
        if over_limit(request, "password_reset", per="account", key=_field("email")):
            return redirect("password_reset_done")
    return auth_views.PasswordResetView.as_view()(request)


def register(request):
    if request.user.is_authenticated:
        return redirect("profile")
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        _tell_the_address_owner(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. Pick a mixture and upload an expert.")
        return redirect("home")
    return render(
        request, "registration/register.html", {"form": form}, status=400 if form.errors else 200
    )


@login_required
def profile(request):
    from experts.models import Expert

    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop("new_token", None)
    experts = Expert.objects.filter(owner=request.user).select_related("mixture", "domain")
    return render(
        request,
        "registration/profile.html",
        {
            "experts": experts,
            "token": token,
            "new_key": new_key,
        },
    )


@login_required
@require_POST
def token_create(request):
    Token.objects.filter(user=request.user).delete()
    token = Token.objects.create(user=request.user)
    request.session["new_token"] = token.key  # shown once, on the next page
    messages.success(request, "A new API token was created; copy it now, it is shown once.")
    return redirect("profile")


@login_required
@require_POST
def token_revoke(request):
    deleted, _ = Token.objects.filter(user=request.user).delete()
    if deleted:
        messages.success(request, "Your API token was revoked.")
    return redirect("profile")
