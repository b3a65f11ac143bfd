from django.apps import AppConfig


class BillingConfig(AppConfig):
    """The customer's billing pages (Home, Your products, Invoices and the invoice documents): they show
    subscriptions, invoices and payments together, so they sit above both apps."""

    name = "billing"
    verbose_name = "Billing pages"

    def ready(self) -> None:
        from notifications.services import invoice_pdf_source_register

        from .documents import notice_invoice_pdfs

        invoice_pdf_source_register(notice_invoice_pdfs)
