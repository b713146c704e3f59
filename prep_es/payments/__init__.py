"""Payment provider adapters: the in-process sandbox (test mode) and Stripe.

Each implements ``aggregates.payment_provider.PaymentProvider``; they sit beside the event
store, below the command side that uses them through that port."""
