from django.urls import path

from tickets import views

urlpatterns = [
    path("tickets-status", views.TicketsStatusView.as_view(), name="tickets-status"),
    path("ticket-refund/<str:ticket_id>", views.TicketRefundView.as_view(), name="ticket-refund"),
    path("tickets", views.tickets_list, name="tickets"),
    path("health", views.health, name="health"),
]
