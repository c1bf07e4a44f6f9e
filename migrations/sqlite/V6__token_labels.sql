-- API tokens carry a label their owner gave them ("deploy bot"), shown in the token list.
ALTER TABLE sessions ADD COLUMN label TEXT;
