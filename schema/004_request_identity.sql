-- A request's identity for replay vs. 94 is now taken from its business fields only
-- (pos_gateway/domain/identity.py: type, PAN, amount, original references), whichever
-- transport carries it. The hashes stored so far covered the whole JSON body (time of
-- day and currency spelling included), so they can no longer be compared.
--
-- Where a row holds every field of its request's identity, the identity is recomputed
-- here, exactly as request_identity() computes it: purchases, balance inquiries and the
-- refused kinds of a known card (PAN from the card, amount as recorded), and reversals
-- whose original is on record (its STAN; also the key it reserved, when it came first). A retransmission of such a request that
-- straddles the upgrade still gets its stored answer, and other content still 94.
--
-- The rest - requests for an unknown card number, refunds (whether the PAN was sent is
-- not recorded) and a reversal naming its own STAN - cannot be recomputed. Their hash is
-- emptied: an empty identity means "not known", and the key alone then decides, so a
-- same-key request is answered the stored answer (services/transactions.py). That is
-- the safe side: a replay never moves money, whereas a 94 to a retransmitted refund
-- would leave the terminal to retry it under a new STAN and refund twice. Blocked rows
-- (a reversal's reservation of its original's key) already hold the empty hash.

UPDATE transactions SET request_hash = ''::bytea
WHERE txn_type <> 'blocked';

UPDATE transactions t
SET request_hash = sha256(convert_to(concat_ws(chr(31),
        'pos-request-identity',
        'type=' || t.txn_type,
        'pan=' || c.pan,
        'amount=' || t.amount::text), 'UTF8'))
FROM cards c
WHERE c.card_id = t.card_id
  AND t.txn_type IN ('purchase', 'balance_inquiry', 'cash_withdrawal', 'transfer');

UPDATE transactions t
SET request_hash = sha256(convert_to(concat_ws(chr(31),
        'pos-request-identity',
        'type=reversal',
        'original_stan=' || o.stan::text), 'UTF8'))
FROM transactions o
WHERE o.transaction_id = t.original_transaction_id
  AND t.txn_type = 'reversal';
