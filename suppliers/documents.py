"""Verification documents a supplier uploads for staff review."""

from __future__ import annotations

from typing import cast

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.scopes import ACCOUNT
from marketplace.errors import InvalidInput

from .models import OrganizationDocument
from .organizations import organization_of_member

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


DOCUMENT_SIGNATURES = {b"%PDF-": "application/pdf", b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def document_content_type(head: bytes) -> str | None:
    """The type from the file's first bytes (never trust the name or the browser's claim)."""
    for signature, content_type in DOCUMENT_SIGNATURES.items():
        if head.startswith(signature):
            return content_type
    return None


@transaction.atomic
def organization_document_upload(*, user: User, kind: str, upload: UploadedFile | None) -> OrganizationDocument:
    """Attach a verification document (PDF, PNG or JPEG, at most 10 MB) to the user's organization."""
    organization = organization_of_member(user, area=ACCOUNT)
    errors = {}
    if kind not in OrganizationDocument.Kind.values:
        errors["kind"] = [_("Choose a document kind.")]
    if upload is None:
        errors["file"] = [_("Choose a file.")]
    elif cast(int, upload.size) > MAX_DOCUMENT_BYTES:  # a file uploaded with a request has its size
        errors["file"] = [_("Files are at most 10 MB.")]
    content_type = None
    if upload is not None and "file" not in errors:
        head = upload.read(16)
        upload.seek(0)
        content_type = document_content_type(head)
        if content_type is None:
            errors["file"] = [_("Upload a PDF, PNG or JPEG.")]
    if errors:
        raise InvalidInput(_("The document was not accepted."), fields=errors)
    upload = cast(UploadedFile, upload)  # no errors: the file is there and its type is known
    return OrganizationDocument.objects.create(
        organization=organization,
        kind=kind,
        file=upload,
        original_name=cast(str, upload.name)[:255],
        content_type=cast(str, content_type),
        size_bytes=cast(int, upload.size),
        uploaded_by=user,
    )
