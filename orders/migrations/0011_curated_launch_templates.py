"""The curated launch templates every deployment starts with (staff edit them in the admin)."""

from django.db import migrations

HELLO_WEB = (
    "python3 -c 'import http.server, os\n"
    "class Hello(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    '        body = ("Hello from instance i-" + os.environ.get("INSTANCE_ID", "?") + "\\n").encode()\n'
    "        self.send_response(200)\n"
    '        self.send_header("Content-Type", "text/plain; charset=utf-8")\n'
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    'http.server.HTTPServer(("0.0.0.0", int(os.environ.get("PORT_8000", "8000"))), Hello).serve_forever()\''
)

CURATED = [
    {
        "name": "hello-web",
        "title": "Hello web server",
        "description": "A tiny HTTP server on port 8000 that says which instance answered: the quickest way to "
        "see a rented instance reachable from your browser.",
        "image": "python:3.12-slim",
        "command": HELLO_WEB,
        "ports": [8000],
        "environment": [],
    },
    {
        "name": "pytorch-jupyter",
        "title": "PyTorch + JupyterLab",
        "description": "PyTorch 2.5 with CUDA 12.4 and JupyterLab on port 8888 (its login token is in the "
        "output), and SSH on port 22 with your keys.",
        "image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        "command": "pip install -q jupyterlab && jupyter lab --ip 0.0.0.0 --port 8888 --allow-root --no-browser",
        "ports": [22, 8888],
        "environment": [],
    },
    {
        "name": "vllm-openai",
        "title": "vLLM OpenAI-compatible server",
        "description": "vLLM serving MODEL (a Hugging Face model id) with the OpenAI API on port 8000. Give "
        "HF_TOKEN as a secret variable for gated models.",
        "image": "vllm/vllm-openai:v0.6.4",
        "command": 'python3 -m vllm.entrypoints.openai.api_server --model "$MODEL" --host 0.0.0.0 --port 8000',
        "ports": [8000],
        "environment": [{"name": "MODEL", "value": "Qwen/Qwen2.5-0.5B-Instruct"}],
    },
    {
        "name": "ubuntu-ssh",
        "title": "Ubuntu 24.04 with SSH",
        "description": "Plain Ubuntu with an SSH server on port 22 that accepts the keys you chose at order.",
        "image": "ubuntu:24.04",
        "command": "apt-get update -qq && apt-get install -y -qq openssh-server && mkdir -p /run/sshd "
        "&& exec /usr/sbin/sshd -D -e",
        "ports": [22],
        "environment": [],
    },
]


def add_curated(apps, schema_editor):
    LaunchTemplate = apps.get_model("orders", "LaunchTemplate")
    for template in CURATED:
        if not LaunchTemplate.objects.filter(owner__isnull=True, name=template["name"]).exists():
            LaunchTemplate.objects.create(owner=None, **template)


def remove_curated(apps, schema_editor):
    LaunchTemplate = apps.get_model("orders", "LaunchTemplate")
    LaunchTemplate.objects.filter(owner__isnull=True, name__in=[t["name"] for t in CURATED]).delete()


class Migration(migrations.Migration):
    dependencies = [("orders", "0010_agent_utilization_samples")]

    operations = [migrations.RunPython(add_curated, remove_curated)]
