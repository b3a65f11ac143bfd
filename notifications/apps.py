from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # accounts mails (invitations, role changes) without importing this app, which sits above it.
        from accounts.services import mail_sender_register

        from .services import notice_send

        mail_sender_register(notice_send)
