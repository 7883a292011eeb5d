-- Agents and policies that require every mandate they are behind to be bound to its holder's
-- key (proof of possession): an unbound mint request is refused with a reason.
ALTER TABLE agents ADD COLUMN require_binding BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE policies ADD COLUMN require_binding BOOLEAN NOT NULL DEFAULT FALSE;
