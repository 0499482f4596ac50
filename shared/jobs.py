"""What travels on the broker: ids only, never image bytes."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from shared.audit import MediaKind

CLASSIFY_QUEUE = "classify"
CLINICIANS_QUEUE = "clinicians"
CLASSIFY_TASK = "worker.tasks.classify_photo"
NOTIFY_CLINICIANS_TASK = "worker.tasks.notify_clinicians"


class ClassifyPhotoRequest(BaseModel):
    job_id: uuid.UUID
    chat_id: int  # needed to reply; lives on the broker only until the task is done, never in the audit DB
    status_message_id: int  # the "analysing..." message the worker edits into the result
    file_id: str
    media_kind: MediaKind


class NotifyCliniciansRequest(BaseModel):
    job_id: uuid.UUID
    file_id: str
    media_kind: MediaKind
