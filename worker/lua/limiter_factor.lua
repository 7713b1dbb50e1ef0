-- KEYS: penalty; returns the current factor (as text).
--! include limiter_common
return string.format('%.17g', factor(KEYS[1], now_us()))
