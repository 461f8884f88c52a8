/* json_decode.h — the JSON decoder of the message path (edgews.router's default, via
 * lua/edgews/json.lua): builds exactly the Lua values lua-cjson's decode builds, faster.
 *
 * It decodes strict RFC 8259 JSON nested at most EWS_JSON_FAST_DEPTH deep, whose
 * strings hold no raw control character, no \u0000 and no surrogate escape. Any other
 * input (every invalid text included) goes to the lua-cjson decode function it was
 * created with, unchanged, so the error messages, cjson's leniencies (inf, nan, hex
 * numbers, ...) and its depth limit are cjson's own. Tables are built the way cjson
 * builds them (an empty table, then the fields in the order of the text; an object
 * with fields starts at the 2-node hash part LuaJIT's first growth would give it), so
 * even the order pairs() visits the fields in is the same, also for fields added
 * later; null is cjson.null (a NULL
 * light userdata); numbers are doubles as strtod reads them. */
#ifndef EWS_LUA_JSON_DECODE_H
#define EWS_LUA_JSON_DECODE_H

#include <lua.h>

#define EWS_JSON_FAST_DEPTH 64

/* Pushes decode(text) -> value | cjson's results: a C closure over the fallback
 * decoder at stack index idx (cjson.safe.decode, or cjson.decode to raise). */
void ews_json_push_decoder(lua_State *L, int idx);

#endif
