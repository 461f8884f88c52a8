-- Slow-consumer policy "drop" (see bp_common.lua).
require("bp_common")("drop")
