-- Serving an event to the device that sent it adds the client's transaction id (spec:
-- "Transaction identifiers"); the lookup goes from the served events' ids to their
-- transactions.
CREATE INDEX event_transactions_event ON event_transactions (event_id);
