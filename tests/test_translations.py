"""The Simplified Chinese (zh-Hans) catalogue and the language the pages speak.

The catalogue is complete and compiled (`make messages` regenerates both); pages speak the language
of the `django_language` cookie, else the deployment's LANGUAGE_CODE (never the browser's).
"""

import ast
import gettext
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from marketplace.models import Offer
from tests.factories import HostFactory

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
COOKIE = settings.LANGUAGE_COOKIE_NAME


def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file, header first: msgctxt, msgid, msgid_plural, msgstr or msgstr[n], flags.
    Obsolete entries (`#~`, kept by makemessages for strings no longer in the code) are left out."""
    entries: list[dict] = []
    entry: dict | None = None
    keyword = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            entry = None
            continue
        if entry is None:
            entry = {"flags": set(), "msgctxt": None, "msgid_plural": None, "msgstr": {}}
            entries.append(entry)
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            value = ast.literal_eval(line)
            if keyword.startswith("msgstr"):
                entry["msgstr"][keyword] += value
            else:
                entry[keyword] += value
        else:
            keyword, _, literal = line.partition(" ")
            value = ast.literal_eval(literal)
            if keyword.startswith("msgstr"):
                entry["msgstr"][keyword] = value
            else:
                entry[keyword] = value
    return [entry for entry in entries if "msgid" in entry]


@pytest.fixture(scope="module")
def catalogue() -> list[dict]:
    return po_entries(CATALOGUE / "django.po")[1:]  # without the header


def test_catalogue_is_large_and_has_every_entry_translated(catalogue):
    assert len(catalogue) > 500
    untranslated = [e["msgid"] for e in catalogue if not all(e["msgstr"].values()) or not e["msgstr"]]
    assert untranslated == []
    plural_without_form = [e["msgid"] for e in catalogue if e["msgid_plural"] and "msgstr[0]" not in e["msgstr"]]
    assert plural_without_form == []


def test_catalogue_has_no_fuzzy_entry_nor_fuzzy_header():
    fuzzy = [e.get("msgid") for e in po_entries(CATALOGUE / "django.po") if "fuzzy" in e["flags"]]
    assert fuzzy == []


MAKEMESSAGES_IGNORES = [".venv", "client", "agent", "bench", "tests", "staticfiles", "var", ".git", "node_modules"]


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext's xgettext is not installed")
def test_every_marked_string_is_in_the_catalogue(catalogue, tmp_path):
    """makemessages over a copy of the code finds no msgid the catalogue lacks: a string marked since the
    last `make messages` fails here until it is translated."""
    copy = tmp_path / "src"
    shutil.copytree(
        settings.BASE_DIR, copy, ignore=shutil.ignore_patterns(*MAKEMESSAGES_IGNORES, "__pycache__", "locale")
    )
    (copy / "locale").mkdir()
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "zh_Hans",
            *(f"--ignore={i}" for i in MAKEMESSAGES_IGNORES),
        ],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    fresh = po_entries(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po")[1:]
    known = {(e["msgctxt"], e["msgid"]) for e in catalogue}
    assert [e["msgid"] for e in fresh if (e["msgctxt"], e["msgid"]) not in known] == []


def test_compiled_catalogue_is_in_step_with_the_po(catalogue):
    with open(CATALOGUE / "django.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = []
    for e in catalogue:
        if e["msgid_plural"]:
            expected = e["msgstr"]["msgstr[0]"]
            got = {compiled.ngettext(e["msgid"], e["msgid_plural"], n) for n in (1, 2, 5)}
            if got != {expected}:
                stale.append(e["msgid"])
        elif e["msgctxt"] is not None:
            if compiled.pgettext(e["msgctxt"], e["msgid"]) != e["msgstr"]["msgstr"]:
                stale.append(e["msgid"])
        elif compiled.gettext(e["msgid"]) != e["msgstr"]["msgstr"]:
            stale.append(e["msgid"])
    assert stale == []


@pytest.fixture
def offer(supplier_org):
    HostFactory(organization=supplier_org, name="h100")
    return Offer.objects.listed().first()


def page(client, url: str, language: str | None = None) -> str:
    if language is not None:
        client.cookies[COOKIE] = language
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


# (url name, Chinese that must show, English marked for translation that must not)
PUBLIC_PAGES = [
    ("accounts:login", ["<h1>登录</h1>", "还没有账户", "电子邮箱", "密码"], ["No account?", "<h1>Log in</h1>"]),
    (
        "accounts:signup",
        ["<h1>创建账户</h1>", "租用算力", "确认密码", "已有账户"],
        ["Create your account", "Rent compute", "Password again", "Already have an account?"],
    ),
    (
        "offers",
        ["GPU 与加速卡报价", "筛选", "可靠性", "已认证主机"],
        ["GPU and accelerator offers", "Standard instance types from many suppliers", "Verified host"],
    ),
    (
        "instance_types",
        ["<h1>实例规格</h1>", "已认证报价", "应用", "重置"],
        ["Every offer is one of these standard shapes", "Verified offers", ">Apply<"],
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "chinese", "english"), PUBLIC_PAGES)
def test_public_pages_speak_chinese_with_the_cookie(client, offer, name, chinese, english):
    html = page(client, reverse(name), "zh-hans")
    for text in chinese:
        assert text in html
    for text in english:
        assert text not in html


@pytest.mark.django_db
def test_offer_detail_speaks_chinese(client, offer, buyer):
    client.force_login(buyer)
    html = page(client, reverse("offer_detail", args=[offer.pk]), "zh-hans")
    assert "价格与能耗" in html
    assert "立即租用" in html
    assert "计费方式" in html  # a form label from orders/forms.py
    assert "按需" in html  # a TextChoices label (orders.models.Pricing)
    for english in ("Price and energy", "Rent now", "Where and who", "Same instance type elsewhere"):
        assert english not in html


@pytest.mark.django_db
def test_account_pages_speak_chinese(client, buyer):
    client.force_login(buyer)
    keys = page(client, reverse("accounts:api_keys"), "zh-hans")
    assert "<h1>API 密钥</h1>" in keys
    assert "账户可见的全部内容" in keys  # a scope's label, from accounts/scopes.py
    assert "创建密钥" in keys
    assert "Create key" not in keys and "Read: everything the account can see" not in keys

    notifications = page(client, reverse("accounts:notifications"))
    assert "<h1>通知</h1>" in notifications and "暂无内容" in notifications
    assert "Nothing yet." not in notifications


@pytest.mark.django_db
def test_form_errors_and_messages_speak_chinese(client, buyer):
    client.cookies[COOKIE] = "zh-hans"
    response = client.post(
        reverse("accounts:signup"),
        {"email": "new@example.com", "password1": "a-long-passphrase-9", "password2": "another-one-9"},
    )
    assert "两次输入的密码不一致" in response.content.decode()

    client.force_login(buyer)
    created = client.post(reverse("accounts:teams"), {"name": "Vision"}, follow=True)
    assert "团队 Vision 已创建" in created.content.decode()


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="zh-hans")
def test_a_chinese_deployment_speaks_chinese_without_a_cookie(client, offer):
    html = page(client, reverse("offers"))
    assert "GPU 与加速卡报价" in html
    assert "GPU and accelerator offers" not in html


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="zh-hans")
def test_the_english_cookie_wins_over_a_chinese_deployment(client, offer):
    html = page(client, reverse("offers"), "en")
    assert "GPU and accelerator offers" in html
    assert "GPU 与加速卡报价" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["klingon", "de", "zh-hans'><script>", ""])
def test_an_invalid_cookie_falls_back_to_the_deployment_language(client, offer, cookie):
    assert "GPU and accelerator offers" in page(client, reverse("offers"), cookie)
    with override_settings(LANGUAGE_CODE="zh-hans"):
        assert "GPU 与加速卡报价" in page(client, reverse("offers"), cookie)


@pytest.mark.django_db
def test_english_is_the_default_whatever_the_browser_asks(client, offer):
    response = client.get(reverse("offers"), HTTP_ACCEPT_LANGUAGE="zh-Hans,zh;q=0.9")
    assert "GPU and accelerator offers" in response.content.decode()
    assert response["Content-Language"].startswith("en")
    client.cookies[COOKIE] = "zh-hans"
    assert client.get(reverse("offers"))["Content-Language"] == "zh-hans"


@pytest.mark.django_db
def test_the_switcher_sets_the_cookie_and_returns_to_the_page(client, offer):
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": "/offers/"})
    assert response.status_code == 302
    assert response["Location"] == "/offers/"
    assert response.cookies[COOKIE].value == "zh-hans"
    assert "GPU 与加速卡报价" in client.get("/offers/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("next_url", ["https://evil.example/offers/", "//evil.example/", "http://evil.example"])
def test_the_switcher_does_not_follow_next_to_another_host(client, next_url):
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": next_url})
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
    assert response.cookies[COOKIE].value == "zh-hans"


@pytest.mark.django_db
def test_the_switcher_refuses_a_language_the_site_does_not_speak(client):
    response = client.post(reverse("set_language"), {"language": "klingon", "next": "/offers/"})
    assert response["Location"] == "/offers/"
    assert COOKIE not in response.cookies
