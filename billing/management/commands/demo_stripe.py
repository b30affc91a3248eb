"""Run the demo payment server (billing/demo_stripe.py) in the foreground: a local stand-in for Stripe
that the zero-setup run points STRIPE_API_BASE at, so a buyer can top up with the test card."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.demo_stripe import DemoStripeServer


class Command(BaseCommand):
    help = "Serve a Stripe-compatible demo payment server on 127.0.0.1 (never under production settings)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8001, help="Port on 127.0.0.1 (default 8001).")
        parser.add_argument(
            "--webhook-url",
            default="http://127.0.0.1:8000/billing/stripe/webhook/",
            help="Where the platform receives Stripe webhooks (default: the local run's).",
        )

    def handle(self, *args: object, port: int, webhook_url: str, **options: object) -> None:
        try:
            server = DemoStripeServer(
                port=port, webhook_url=webhook_url, webhook_secret=settings.STRIPE_WEBHOOK_SECRET, log_requests=True
            )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"Cannot listen on 127.0.0.1:{port} ({error}); choose another --port.") from None
        self.stdout.write(f"Demo payment server on {server.url}/ (webhooks to {webhook_url})")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
