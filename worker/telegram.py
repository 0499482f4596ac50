"""A small synchronous Bot API client for the workers (Celery tasks are synchronous).

Errors are sorted the way the retry policy needs them: RetryAfter (429, wait what Telegram says),
TelegramUnavailable (network errors and 5xx: retry with backoff), TelegramRequestError (4xx: do not
retry the same request). The token is never logged: shared/logs.py turns httpx's request lines down and
redacts it from every record.
"""

from __future__ import annotations

from typing import Any

import httpx


class TelegramError(Exception):
    pass


class RetryAfter(TelegramError):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"flood control: retry after {seconds} s")
        self.seconds = seconds


class TelegramUnavailable(TelegramError):
    """The Bot API could not be reached or failed on its side: worth retrying."""


class TelegramRequestError(TelegramError):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{status}: {description}")
        self.status = status
        self.description = description


class BotApi:
    def __init__(self, api_base: str, file_base: str, token: str, timeout_s: float = 30.0) -> None:
        self._method_url = f"{api_base}{token}/"
        self._file_url = f"{file_base}{token}/"
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, **parameters: Any) -> Any:
        payload = {k: v for k, v in parameters.items() if v is not None}
        try:
            response = self._http.post(self._method_url + method, json=payload)
        except httpx.HTTPError as error:
            raise TelegramUnavailable(f"{method}: {type(error).__name__}") from None
        return self._result(method, response)

    def _result(self, method: str, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 429 or body.get("error_code") == 429:
            raise RetryAfter(int(body.get("parameters", {}).get("retry_after", 5)))
        if response.status_code >= 500:
            raise TelegramUnavailable(f"{method}: HTTP {response.status_code}")
        if not body.get("ok"):
            raise TelegramRequestError(response.status_code, str(body.get("description", "unknown error")))
        return body["result"]

    def download_file(self, file_id: str, max_bytes: int) -> bytes:
        """getFile, then the download; refuses to read more than ``max_bytes``."""
        file_info = self.call("getFile", file_id=file_id)
        if int(file_info.get("file_size") or 0) > max_bytes:
            raise FileTooLarge(int(file_info["file_size"]))
        try:
            with self._http.stream("GET", self._file_url + file_info["file_path"]) as response:
                if response.status_code >= 500:
                    raise TelegramUnavailable(f"download: HTTP {response.status_code}")
                if response.status_code != 200:
                    raise TelegramRequestError(response.status_code, "file download failed")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileTooLarge(size)
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise TelegramUnavailable(f"download: {type(error).__name__}") from None
        return b"".join(chunks)


class FileTooLarge(TelegramError):
    def __init__(self, size: int) -> None:
        super().__init__(f"file of {size} bytes is over the limit")
        self.size = size
