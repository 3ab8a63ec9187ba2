"""WhatsApp and SMS through Twilio: verified webhooks in, the Twilio REST client out.

Input side: `POST /twilio/sms` and `POST /twilio/whatsapp` (form-encoded, as Twilio sends
them). Every request is checked first with twilio's `RequestValidator` against the *public*
URL Twilio called (`PUBLIC_BASE_URL` + path + query; behind a proxy the internal URL differs
and would never validate); a missing or forged `X-Twilio-Signature` gets 403 and nothing is
processed. A valid message is answered at once with an empty TwiML `<Response/>` and its turn
runs in the background; the assistant deduplicates on Twilio's `MessageSid`, so a redelivered
webhook never produces a second reply or a second order.

Output side: `TwilioMessagingChannel` sends through `Client.messages.create_async` (over
aiohttp, `AioHttpTwilioClient`), split under the medium's limit (WhatsApp via Twilio takes 1600
characters per message; SMS is split at 1530, ten concatenated segments). Confirmation buttons
become "Reply YES or NO". Media messages are answered with what is supported (text only). The
REST base URL can point elsewhere (`TWILIO_API_BASE_URL`, used by tests to record the messages
on a local server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from starlette.datastructures import ImmutableMultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    compare,
    get_signature_algorithm,
)
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from assistant.messages import InboundMessage, Reply
from channels.base import OutboundChannel, TurnRunner, call_with_retry, split_text
from tools.settings import Settings

log = logging.getLogger(__name__)

TWILIO_API_BASE = "https://api.twilio.com"
WHATSAPP_LIMIT = 1600
SMS_LIMIT = 1530
MAX_TEXT = 4000  # what the assistant accepts in one message

MessagingKind = Literal["sms", "whatsapp"]

MEDIA_ONLY = (
    "I can read text only, so I could not open that attachment. Please type your question, "
    "for example: which stores should I call today?"
)
MEDIA_NOTE = "(I can read text only, so I did not open the attachment.)"
TWIML_CONTENT_TYPE = "text/xml"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


# --------------------------------------------------------------------------- REST client


class AioHttpTwilioClient(AsyncHttpClient):
    """twilio's asynchronous transport (`Client(http_client=...)`, the library's extension
    point) over aiohttp: a reply is sent from the event loop, without a worker thread, over a
    kept-alive connection. Sending through the `requests` client in a thread cost several
    times the CPU of this per message.

    `start()` (in the event loop that sends: the app's or the worker's) opens the kept-alive
    session and `aclose()` closes it; a send from another event loop, or before `start()`, uses
    a session of its own for that request. `base_url` replaces the scheme and host of
    api.twilio.com (paths, auth and bodies stay exactly Twilio's). As with `requests`, the
    proxy the environment names is used (read once per host); bodies are form-encoded (JSON
    when the library says so), repeated keys for lists.
    """

    def __init__(self, base_url: str | None = None, *, timeout: float = 15.0) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), True, timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[str, str | None] = {}

    def _new_session(self) -> aiohttp.ClientSession:
        # The environment's proxy is looked up once per host (`_proxy`): aiohttp's
        # `trust_env` would read the environment and ~/.netrc in a thread on every request.
        return aiohttp.ClientSession()

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for `url`'s host (HTTPS_PROXY, NO_PROXY, ...),
        as `requests` would use it."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            proxies = getproxies()
            bypass = not proxies or proxy_bypass(parts.hostname or "")
            self._proxies[origin] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[origin]

    async def start(self) -> None:
        """Open the kept-alive session for the running event loop."""
        if self._session is None:
            self._session = self._new_session()
            self._loop = asyncio.get_running_loop()

    async def aclose(self) -> None:
        session, self._session, self._loop = self._session, None, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        if self.base_url and uri.startswith(TWILIO_API_BASE):
            uri = self.base_url + uri[len(TWILIO_API_BASE) :]
        headers = dict(headers or {})
        if auth is not None:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        body: bytes | None = None
        if data:
            if headers.get("Content-Type", "").endswith("json"):
                body = json.dumps(data).encode()
            else:
                body = urlencode(_pairs(data), doseq=True).encode()
                headers.setdefault("Content-Type", FORM_CONTENT_TYPE)
        options: dict[str, Any] = {
            "params": _pairs(params) if params else None,
            "data": body,
            "headers": headers,
            "timeout": aiohttp.ClientTimeout(total=timeout or self.timeout),
            "allow_redirects": allow_redirects,
            "proxy": self._proxy(uri),
        }
        if self._session is not None and self._loop is asyncio.get_running_loop():
            return await self._send(self._session, method, uri, options)
        async with self._new_session() as session:
            return await self._send(session, method, uri, options)

    async def _send(
        self, session: aiohttp.ClientSession, method: str, uri: str, options: dict[str, Any]
    ) -> TwilioResponse:
        async with session.request(method.upper(), uri, **options) as response:
            text = await response.text()
            return TwilioResponse(response.status, text, response.headers)


def _pairs(values: dict[str, object]) -> list[tuple[str, Any]]:
    """Form or query fields as `requests` sends them: None left out, a list as repeated keys."""
    pairs: list[tuple[str, Any]] = []
    for key, value in values.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append((key, str(item)))
    return pairs


def make_client(settings: Settings) -> Client:
    """The Twilio REST client for the configured account (sends with `create_async`)."""
    if not settings.twilio_account_sid or settings.twilio_auth_token is None:
        raise RuntimeError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set")
    return Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=AioHttpTwilioClient(settings.twilio_api_base_url),
        # Only the settings configure the client, never stray TWILIO_* environment variables.
        environment={},
    )


def _retry_after(error: Exception) -> float | None:
    # Twilio answers 429 when the sending rate is exceeded; 5xx are worth one more try.
    if isinstance(error, TwilioRestException) and (error.status == 429 or error.status >= 500):
        return 1.0
    return None


# --------------------------------------------------------------------------- rendering


def render_text(reply: Reply) -> str:
    """A reply as one plain-text message body; confirmation buttons become "Reply YES or NO"."""
    text = reply.model_copy(update={"buttons": []}).as_text()
    if reply.buttons:
        # One-word answers read best in capitals ("Reply YES or NO"); longer labels are quoted.
        words = [
            b.label.upper() if len(b.label.split()) == 1 else f"'{b.label}'" for b in reply.buttons
        ]
        text += "\nReply " + " or ".join(words) + "."
    return text


class TwilioMessagingChannel(OutboundChannel):
    """Sends SMS or WhatsApp messages through the Twilio REST client."""

    def __init__(
        self,
        client: Client,
        kind: MessagingKind,
        from_: str,
        *,
        digest_content_sid: str | None = None,
    ) -> None:
        self.client = client
        self.digest_content_sid = digest_content_sid if kind == "whatsapp" else None
        self.name = kind
        self.kind = kind
        self.max_length = WHATSAPP_LIMIT if kind == "whatsapp" else SMS_LIMIT
        self.from_ = self.address(from_)

    def address(self, number: str) -> str:
        """`number` as Twilio addresses it on this channel (`whatsapp:+91...` for WhatsApp)."""
        number = number.strip()
        if self.kind == "whatsapp":
            return number if number.startswith("whatsapp:") else f"whatsapp:{number}"
        return number.removeprefix("whatsapp:")

    async def start(self) -> None:
        """Open the REST client's kept-alive connection (see `AioHttpTwilioClient`)."""
        start = getattr(self.client.http_client, "start", None)
        if start is not None:
            await start()

    async def aclose(self) -> None:
        close = getattr(self.client.http_client, "aclose", None)
        if close is not None:
            await close()

    async def _create(self, **fields: Any) -> None:
        async def attempt() -> Any:
            return await self.client.messages.create_async(from_=self.from_, **fields)

        await call_with_retry(attempt, retry_after=_retry_after)

    async def send_text(self, recipient: str, text: str) -> None:
        await self._create(to=self.address(recipient), body=text)

    async def send_reply(self, recipient: str, reply: Reply) -> None:
        for part in split_text(render_text(reply), self.max_length):
            await self.send_text(recipient, part)

    def has_digest_template(self) -> bool:
        """Whether an approved template (Content SID) is configured for the digest."""
        return self.digest_content_sid is not None

    async def send_digest_template(self, recipient: str, variables: list[str]) -> None:
        """Send the approved digest template; `variables` fill its placeholders {{1}}, {{2}}..."""
        if self.digest_content_sid is None:
            raise RuntimeError("TWILIO_WHATSAPP_DIGEST_CONTENT_SID is not set")
        await self._create(
            to=self.address(recipient),
            content_sid=self.digest_content_sid,
            content_variables=json.dumps({str(i): v for i, v in enumerate(variables, start=1)}),
        )


# --------------------------------------------------------------------------- verification


def public_url(settings: Settings, request: Request) -> str:
    """The URL Twilio called: `PUBLIC_BASE_URL` + path + query (the signature covers it)."""
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def public_endpoint(settings: Settings, path: str, **query: Any) -> str:
    """An absolute public URL of one of our webhooks (for TwiML `action` and `Redirect`)."""
    from urllib.parse import urlencode

    url = settings.public_base_url.rstrip("/") + path
    if query:
        url += "?" + urlencode(query)
    return url


async def verified_form(request: Request, settings: Settings) -> ImmutableMultiDict[str, str]:
    """The request's form parameters, after checking Twilio's signature (403 otherwise).

    Twilio posts UTF-8 `application/x-www-form-urlencoded` forms: another content type gets
    415 and bytes that are not UTF-8 (raw or percent-encoded) get 400, nothing processed.
    """
    if settings.twilio_auth_token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "The Twilio channel is not configured.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Twilio webhooks are {FORM_CONTENT_TYPE}."
        )
    try:
        body = (await request.body()).decode("utf-8")
        # Every received parameter is signed, including repeated ones and fields unknown to us.
        pairs = parse_qsl(body, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The form is not valid UTF-8.") from None
    form: ImmutableMultiDict[str, str] = ImmutableMultiDict(pairs)
    signature = request.headers.get(SIGNATURE_HEADER)
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    url = public_url(settings, request)
    if not signature or not (
        _signed_as_given(validator, url, form, signature, algorithm)
        or validator.validate(url, form, signature, algorithm)
    ):
        log.warning("rejected a Twilio webhook to %s: bad or missing signature", request.url.path)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Invalid Twilio signature.")
    return form


def _signed_as_given(
    validator: RequestValidator,
    url: str,
    form: ImmutableMultiDict[str, str],
    signature: str,
    algorithm: str | None,
) -> bool:
    """Whether `signature` is Twilio's for `url` as it is configured: one signature computed
    (with twilio's own `compute_signature` and constant-time `compare`) where `validate`
    always computes two, for the URL with and without its port. Anything else is still
    `validate`'s to decide."""
    try:
        return bool(compare(validator.compute_signature(url, form, algorithm), signature))
    except ValueError:  # an algorithm twilio does not know: `validate` refuses it
        return False


EMPTY_TWIML = str(MessagingResponse())


def empty_twiml() -> Response:
    return Response(EMPTY_TWIML, media_type=TWIML_CONTENT_TYPE)


# --------------------------------------------------------------------------- turns


ROUTES: dict[MessagingKind, str] = {"sms": "sms", "whatsapp": "whatsapp-twilio"}
"""The turn queue's outbound route of each Twilio messaging channel."""


def outbound_channel(settings: Settings, kind: MessagingKind) -> TwilioMessagingChannel | None:
    """The configured outbound channel of `kind`, or None when it is not configured."""
    sender = settings.twilio_sms_from if kind == "sms" else settings.twilio_whatsapp_from
    if not sender or not settings.twilio_account_sid or settings.twilio_auth_token is None:
        return None
    return TwilioMessagingChannel(
        make_client(settings),
        kind,
        sender,
        digest_content_sid=settings.twilio_whatsapp_digest_content_sid,
    )


def parse_inbound(kind: MessagingKind, form: ImmutableMultiDict[str, str]) -> InboundMessage | None:
    """The message of a verified Twilio webhook; None for a delivery-status callback.

    A message with attachments only (NumMedia > 0, no Body) has empty text: the turn handler
    answers it with what is supported. Twilio adds fields without notice; unknown ones are
    ignored here (but were part of the signature).
    """
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
    sender = form.get("From")
    if "Body" not in form and "NumMedia" not in form:
        log.info("Twilio %s status %s for %s", kind, form.get("MessageStatus"), sid)
        return None
    if not sid or not sender:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid and From are required.")
    text = (form.get("Body") or "").strip()[:MAX_TEXT]
    if kind == "whatsapp" and not sender.startswith("whatsapp:"):
        sender = f"whatsapp:{sender}"
    return InboundMessage(
        channel=kind,
        sender=sender,
        text=text,
        message_id=sid,
        button_payload=form.get("ButtonPayload") or None,
    )


class LocalTwilioTurns:
    """Runs Twilio turns in this process when the app has no shared turn queue."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.runners: dict[str, TurnRunner] = {}

    async def submit(self, message: InboundMessage, *, via: str) -> None:
        runner = self.runners.get(via)
        if runner is None:
            from channels.queue import ChannelHandler

            settings: Settings = self.app.state.settings
            channel = outbound_channel(settings, message.channel)  # type: ignore[arg-type]
            if channel is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"{via} is not configured.")
            from channels.delivery import Deliveries

            handler = ChannelHandler(self.app.state.assistant.get(), settings)
            runner = self.runners[via] = TurnRunner(
                handler, {channel.name: channel}, deliveries=Deliveries(handler.engine)
            )
        await runner.submit(message)

    async def drain(self, timeout: float = 30.0) -> None:
        for runner in self.runners.values():
            await runner.drain(timeout)


def _turns(app: FastAPI) -> Any:
    """Where Twilio turns go: the app's turn queue, or a local runner when there is none."""
    turns = getattr(app.state, "turns", None)
    if turns is not None:
        return turns
    local: LocalTwilioTurns | None = getattr(app.state, "twilio_turns", None)
    if local is None:
        local = app.state.twilio_turns = LocalTwilioTurns(app)
    return local


def enabled(settings: Settings, kind: MessagingKind) -> bool:
    sender = settings.twilio_sms_from if kind == "sms" else settings.twilio_whatsapp_from
    return bool(sender and settings.twilio_account_sid and settings.twilio_auth_token)


@asynccontextmanager
async def twilio_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Part of the app's lifespan: let running Twilio turns (messages and calls) finish."""
    from channels.twilio_voice import twilio_voice

    voice = twilio_voice(app)
    try:
        yield
    finally:
        local: LocalTwilioTurns | None = getattr(app.state, "twilio_turns", None)
        try:
            await asyncio.gather(
                voice.aclose(), local.drain() if local is not None else asyncio.sleep(0)
            )
        except TimeoutError:
            log.warning("Twilio turns still running at shutdown")


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix="/twilio", tags=["channels"], include_in_schema=False)


async def _webhook(request: Request, kind: MessagingKind) -> Response:
    settings: Settings = request.app.state.settings
    if not enabled(settings, kind):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Twilio {kind} is not configured.")
    form = await verified_form(request, settings)
    message = parse_inbound(kind, form)
    if message is not None:
        # A WhatsApp sender's 24-hour window is recorded when the turn runs (see
        # `channels.base.record_whatsapp_window`), not before this acknowledgement.
        await _turns(request.app).submit(message, via=ROUTES[kind])
    return empty_twiml()


@router.post("/sms")
async def sms_webhook(request: Request) -> Response:
    """Inbound SMS from Twilio."""
    return await _webhook(request, "sms")


@router.post("/whatsapp")
async def whatsapp_webhook(request: Request) -> Response:
    """Inbound WhatsApp message from Twilio."""
    return await _webhook(request, "whatsapp")


def _register() -> None:
    # The turn queue (in process or a Redis worker) builds the outbound channels by route.
    from channels.queue import register_outbound

    register_outbound("sms", lambda settings, _engine: outbound_channel(settings, "sms"))
    register_outbound(
        "whatsapp-twilio", lambda settings, _engine: outbound_channel(settings, "whatsapp")
    )


_register()
