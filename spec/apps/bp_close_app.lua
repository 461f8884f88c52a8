-- Slow-consumer policy "close" (see bp_common.lua).
require("bp_common")("close")
