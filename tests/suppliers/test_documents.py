import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from suppliers.models import OrganizationDocument
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def upload(client, content, name="doc.pdf", kind="registration"):
    return client.post(
        reverse("suppliers:documents"), {"kind": kind, "file": SimpleUploadedFile(name, content)}, follow=True
    )


def test_pdf_is_accepted_and_only_members_and_staff_can_download(client, supplier, other_supplier):

    client.force_login(supplier)
    upload(client, PDF)
    document = OrganizationDocument.objects.get()
    assert (document.content_type, document.size_bytes, document.original_name) == (
        "application/pdf",
        len(PDF),
        "doc.pdf",
    )
    response = client.get(reverse("suppliers:document_download", args=[document.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    client.force_login(other_supplier)
    assert client.get(reverse("suppliers:document_download", args=[document.pk])).status_code == 404
    client.force_login(UserFactory(is_staff=True, credit=0))
    assert client.get(reverse("suppliers:document_download", args=[document.pk])).status_code == 200


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"MZ\x90\x00 not a document", "doc.pdf", "Upload a PDF, PNG or JPEG"),  # a renamed executable
        (b"%PDF-" + b"x" * (10 * 1024 * 1024), "big.pdf", "at most 10 MB"),
    ],
)
def test_wrong_type_or_too_big_is_refused(client, supplier, content, name, message):
    client.force_login(supplier)
    response = upload(client, content, name=name)
    assert message in response.content.decode()
    assert not OrganizationDocument.objects.exists()
