-- What happens when a record becomes terminal (succeeded, dead_lettered, cancelled): prepended
-- to every script of worker/store.py that makes a record terminal, and called by it after its
-- write, in the same atomic step.
--
-- By convention the LAST key and the LAST four arguments of such a script belong to this
-- function (worker.store.BindStore._finish_keys / _finish_args):
--   KEYS[#KEYS]   the record of the completion callback's delivery (keys.callback_job)
--   ARGV[#ARGV-3] the record's done channel (keys.done_channel)
--   ARGV[#ARGV-2] the delivery's key (keys.callback_job)
--   ARGV[#ARGV-1] when the watchdog first looks at the delivery (ms)
--   ARGV[#ARGV]   the delivery record's TTL (s)
local function axb_finished(rec, status, delayed, watch, now)
  local n = #ARGV
  redis.call('PUBLISH', ARGV[n - 3], status)
end
