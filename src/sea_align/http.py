"""A minimal OpenAI-compatible chat-completions client (stdlib only): timeouts, retries with backoff.
The API key is passed in by the caller, who reads it from the environment; it is never logged."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class HTTPFailure(RuntimeError):
    pass


def chat_completion(base_url: str, model: str, api_key: str, messages: list[dict], temperature: float = 0.0,
                    max_tokens: int = 256, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0) -> str:
    url = base_url.rstrip("/") + "/chat/completions"
    body = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                       "max_tokens": max_tokens}).encode()
    last = "no attempt"
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
            return str(data["choices"][0]["message"]["content"])
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 and e.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            last = type(e).__name__
        except (ValueError, KeyError, IndexError, TypeError):
            last = "malformed response"
            break
        if attempt < retries:
            time.sleep(backoff * (2 ** attempt))
    raise HTTPFailure(last)
