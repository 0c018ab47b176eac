-- A card's PAN is checked (16-19 digits, Luhn) once, when the card is written. 009 made the
-- PAN immutable (cards_keys_fixed), yet the CHECK of 001 re-ran luhn_valid(), a SQL
-- function PostgreSQL cannot inline (~11 us), on every new version of the row: twice per
-- purchase (the PIN try counted, the good-PIN write), checking nothing new. The check now
-- runs once per inserting statement over the rows it added, so a COPY of a million cards
-- pays one pass, and it fails as the CHECK did: check_violation on cards_pan_check.
ALTER TABLE cards DROP CONSTRAINT cards_pan_check;

CREATE FUNCTION cards_pan_valid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added_cards
               WHERE NOT (pan ~ '^[0-9]{16,19}$' AND luhn_valid(pan))) THEN
        RAISE EXCEPTION 'cards: a PAN is 16 to 19 digits with a valid Luhn check digit'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cards_pan_check',
                  TABLE = 'cards';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cards_pan_checked AFTER INSERT ON cards
    REFERENCING NEW TABLE AS added_cards
    FOR EACH STATEMENT EXECUTE FUNCTION cards_pan_valid();
