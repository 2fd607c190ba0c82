"""Accounts: registration, profile and API tokens (Django auth and DRF tokens)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token


class RegisterForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="for password resets")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("an account with this e-mail address exists")
        return email


def register(request):
    if request.user.is_authenticated:
        return redirect("profile")
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
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
