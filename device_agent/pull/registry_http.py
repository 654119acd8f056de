"""Talk to a registry the way the Docker token spec says: ``GET /v2/``; on ``401`` with a
``Bearer realm=...,service=...`` challenge, ask the realm for a token with HTTP Basic auth and
``scope=repository:NAME:pull``; repeat the request with ``Authorization: Bearer``. A ``Basic``
challenge gets the login directly. The token is used until the lifetime it came with nearly ends;
a 401 before that (the registry's clock is ahead, or the key that signed it was revoked) gets one
new token and one retry, so a pull that outlasts its token keeps going.

``tls_verify=False`` accepts any certificate and falls back to plain HTTP (as skopeo's
``--tls-verify=false`` does).

Credentials go to their own origin only. The token request is never redirected: a 3xx from the
realm is a failure naming the ``Location`` (its answer from elsewhere is no token). Manifest and
blob GETs follow redirects themselves (registries send blob downloads to storage elsewhere, S3
and the like), carrying the ``Authorization`` header (Bearer or Basic) only to a URL of the
registry's own origin (scheme, host and port), never to another one.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from dataclasses import dataclass

import requests

from device_agent.pull.backend import PullCancelled, PullFailed

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
TOKEN_SAFETY_S = 10.0
DEFAULT_TOKEN_LIFETIME_S = 60.0
MAX_REDIRECTS = 5
MAX_LOCATION_CHARS = 200
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class _Token:
    value: str
    expires_at: float


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port), the port filled in for http and https; ("", "", None) if unusable."""
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parsed.port
    except ValueError:
        return "", "", None
    return scheme, (parsed.hostname or "").lower(), port or default


def _shown(url: str) -> str:
    """A URL for messages: without its query (a storage redirect's may hold a signature)."""
    return urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()[:MAX_LOCATION_CHARS]


def _location(answer: requests.Response) -> str:
    return str(answer.headers.get("Location") or "nowhere")[:MAX_LOCATION_CHARS]


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` → ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """One repository on one registry, with one login; not shared between threads."""

    def __init__(
        self,
        login_server: str,
        repository: str,
        username: str,
        password: str,
        *,
        tls_verify: bool,
        cancel: threading.Event,
        session: requests.Session,
        schemes: dict[str, str],
    ) -> None:
        """``session`` and ``schemes`` (login server → the scheme that answered) outlive one
        client, so a device pulling every hour does not set up TLS and probe HTTPS each time."""
        self.login_server = login_server
        self.repository = repository
        self._auth = (username, password)
        self._tls_verify = tls_verify
        self._cancel = cancel
        self._session = session
        self._schemes = schemes
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._token: _Token | None = None

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:pull"

    def _timeout(self) -> tuple[float, float]:
        return (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)

    def ping(self) -> None:
        """``GET /v2/``: find the scheme and the challenge."""
        known = self._schemes.get(self.login_server)
        schemes = ["https"] if self._tls_verify else ["https", "http"]
        last_error: Exception | None = None
        for scheme in [known] if known in schemes else schemes:
            base = f"{scheme}://{self.login_server}"
            try:
                answer = self._session.get(
                    f"{base}/v2/", verify=self._tls_verify, timeout=self._timeout()
                )
            except requests.RequestException as error:
                last_error = error
                continue
            self._base, self._schemes[self.login_server] = base, scheme
            if answer.status_code == 401:
                self._challenge = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
            elif answer.status_code != 200:
                raise PullFailed(f"{base}/v2/ answered {answer.status_code}")
            return
        raise PullFailed(f"cannot reach registry {self.login_server}: {_short(last_error)}")

    def _bearer(self) -> str:
        now = time.monotonic()
        if self._token is not None and now < self._token.expires_at:
            return self._token.value
        if self._challenge is None:
            raise PullFailed("no challenge to answer")
        params = self._challenge[1]
        realm = params.get("realm")
        if not realm:
            raise PullFailed("the registry's Bearer challenge names no realm")
        query = {"scope": self.scope}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            answer = self._session.get(
                realm,
                params=query,
                auth=self._auth,
                verify=True,
                timeout=self._timeout(),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise PullFailed(f"cannot reach the token endpoint: {_short(error)}") from None
        if answer.is_redirect:
            answer.close()
            raise PullFailed(
                f"the token endpoint {realm} answered {answer.status_code} redirecting to "
                f"{_location(answer)}; not followed: the login is sent to the token endpoint only"
            )
        if answer.status_code in (401, 403):
            raise PullFailed("the token endpoint refused the login (unauthorized)", auth=True)
        if answer.status_code != 200:
            raise PullFailed(f"the token endpoint answered {answer.status_code}")
        try:
            body = answer.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, AttributeError, TypeError):
            value = None
        if not isinstance(value, str) or not value:
            raise PullFailed("the token endpoint's answer holds no token")
        self._token = _Token(value, now + max(0.0, lifetime - TOKEN_SAFETY_S))
        return value

    def _headers(self, accept: str | None) -> dict[str, str]:
        headers = {"Accept": accept} if accept else {}
        if self._challenge is None:
            return headers
        scheme = self._challenge[0]
        if scheme == "bearer":
            headers["Authorization"] = f"Bearer {self._bearer()}"
        return headers

    def get(
        self, path: str, *, accept: str | None = None, stream: bool = False
    ) -> requests.Response:
        """GET ``/v2/<repository>/<path>``, authenticated; raises ``PullFailed`` unless 200."""
        if self._cancel.is_set():
            raise PullCancelled()
        if self._base is None:
            self.ping()
        url = f"{self._base}/v2/{self.repository}/{path}"
        answer = self._follow(url, accept, stream)
        if answer.status_code == 401 and self._take_challenge(answer):
            answer.close()  # the JWT expired or its key was revoked: one new one, one retry
            answer = self._follow(url, accept, stream)
        if answer.status_code == 200:
            return answer
        answer.close()
        if answer.status_code in (401, 403):
            raise PullFailed(
                f"{self.login_server}/{self.repository}: requested access to the resource is "
                f"denied ({answer.status_code})",
                auth=True,
            )
        if answer.status_code == 404:
            raise PullFailed(f"{self.login_server}/{self.repository}/{path}: not found")
        raise PullFailed(f"GET {url} answered {answer.status_code}")

    def _take_challenge(self, refused: requests.Response) -> bool:
        """After a 401 from the registry itself: take its Bearer challenge and drop the token
        held, so that the next request asks the realm again. False (nothing to retry) for any
        other challenge, or a 401 from elsewhere (a storage redirect's target is not trusted
        to name a realm for the device's login)."""
        if origin_of(refused.url) != origin_of(self._base or ""):
            return False
        challenge = parse_challenge(refused.headers.get("WWW-Authenticate", ""))
        if challenge[0] != "bearer" or not challenge[1].get("realm"):
            return False
        self._challenge, self._token = challenge, None
        return True

    def _follow(self, url: str, accept: str | None, stream: bool) -> requests.Response:
        """GET ``url``, following redirects; credentials only to the registry's own origin."""
        own = origin_of(self._base or "")
        basic = self._auth if self._challenge and self._challenge[0] == "basic" else None
        for _ in range(MAX_REDIRECTS + 1):
            ours = origin_of(url) == own
            headers = self._headers(accept) if ours else ({"Accept": accept} if accept else {})
            try:
                answer = self._session.get(
                    url,
                    headers=headers,
                    auth=basic if ours else None,
                    stream=stream,
                    verify=self._tls_verify,
                    timeout=self._timeout(),
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                raise PullFailed(f"GET {_shown(url)} failed: {_short(error)}") from None
            if not answer.is_redirect:
                return answer
            answer.close()
            target = urllib.parse.urljoin(url, str(answer.headers["Location"]))
            if origin_of(target)[0] not in ("http", "https"):
                raise PullFailed(f"GET {_shown(url)} redirected to {_shown(target)}: not http(s)")
            url = target
        raise PullFailed(f"GET {_shown(url)}: more than {MAX_REDIRECTS} redirects")


def _short(error: Exception | None) -> str:
    return error.__class__.__name__ if error is None or not str(error) else str(error)[:200]
