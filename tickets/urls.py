from django.urls import path

from tickets import api
from tickets.intake import views

urlpatterns = [
    path("tickets-status", views.TicketsStatusView.as_view(), name="tickets-status"),
    path("ticket-refund/<str:ticket_id>", views.TicketRefundView.as_view(), name="ticket-refund"),
    path("tickets", views.TicketsListView.as_view(), name="tickets"),
    path("health", views.health, name="health"),
    path("api/tickets/<str:ticket_id>", api.TicketDetailApi.as_view(), name="api-ticket-detail"),
]
