-- The record statuses (worker.store.Status; tests/test_lua.py checks that the two agree) and the
-- one terminal check. Included (--! include statuses) by every script that reads or writes a
-- record's status.
local PENDING, RETRYING, SUCCEEDED = 'pending', 'retrying', 'succeeded'
local DEAD_LETTERED, CANCELLED = 'dead_lettered', 'cancelled'

-- Succeeded, dead-lettered and cancelled records are final: no script moves them on.
local function axb_terminal(st)
  return st == SUCCEEDED or st == DEAD_LETTERED or st == CANCELLED
end
