"""Sign in and sign out. Failures say no more than "wrong name or password"."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from fleet.domain.errors import AuthenticationError, TooManyRequestsError
from fleet.domain.operators import MAX_NAME_CHARS, MAX_PASSWORD_CHARS
from fleet.web.blueprint import safe_next, web
from fleet.web.session import ENDED, current_operator, services, sign_out
from fleet.web.session import sign_in as start_session


@web.get("/")
def home() -> Any:
    return redirect(url_for("web.overview"))


@web.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_operator() is not None:
            return redirect(target)
        notice = ENDED.get(request.args.get("ended", ""))
        return render_template("sign_in.html", next=target, notice=notice, name="")
    name = request.form.get("name", "")[:MAX_NAME_CHARS]
    password = request.form.get("password", "")[: MAX_PASSWORD_CHARS + 1]
    try:
        operator = services().operators.authenticate(
            name, password, address=request.remote_addr or "unknown"
        )
    except TooManyRequestsError as exc:
        page = render_template("sign_in.html", next=target, error=exc.message, name=name)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    except AuthenticationError as exc:
        return render_template("sign_in.html", next=target, error=exc.message, name=name), 401
    start_session(operator)
    return redirect(target)


@web.post("/sign-out", endpoint="sign_out")
def sign_out_view() -> Any:
    sign_out()
    return redirect(url_for("web.sign_in"))
