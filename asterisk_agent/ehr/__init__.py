"""The EHR link: HL7 v2.5.1 messages (messages), MLLP transport (mllp), the
durable outbox (outbox) and a simulated interface engine (sim)."""
