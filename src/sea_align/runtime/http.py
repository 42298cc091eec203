"""A minimal OpenAI-compatible chat-completions client (stdlib only): timeouts, retries with backoff.
The API key is passed in by the caller, who reads it from the environment; it is never logged."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request


class HTTPFailure(RuntimeError):
    """The call failed for good; the message says why and after how many attempts (no key, no body)."""


def chat_completion(
    base_url: str,
    model: str,
    api_key: str,
    messages: list[dict],
    temperature: float = 0.0,
    max_tokens: int = 256,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> str:
    """POST {base_url}/chat/completions and return the first choice's text. Retries (backoff * 2^k s)
    on connection errors, timeouts, HTTP 429 and 5xx; other 4xx and malformed bodies fail at once."""
    url = base_url.rstrip("/") + "/chat/completions"
    body = json.dumps(
        {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    ).encode()
    last, attempt = "no attempt", 0
    for attempt in range(1, retries + 2):
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
            return content
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 and e.code != 429:
                break
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None)
            last = (
                "timeout"
                if isinstance(e, TimeoutError) or isinstance(reason, TimeoutError)
                else f"{type(e).__name__}: {reason or e}"[:120]
            )
        except (ValueError, KeyError, IndexError, TypeError):
            last = "malformed response"
            break
        if attempt <= retries:
            time.sleep(backoff * (2 ** (attempt - 1)))
    raise HTTPFailure(f"{last} after {attempt} attempt{'s' if attempt > 1 else ''}")
