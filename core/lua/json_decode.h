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

/* Checks, without building anything, that text is a JSON object the decoder decodes
 * itself (so its table is certain) and finds its "type" field: -> 1 with *type and
 * *type_len pointing into text when the object has a "type" that is a string without
 * escapes (the last one when the key repeats) and no key with an escape at its top
 * level; 0 otherwise (invalid or lenient JSON, not an object, no such field: the caller
 * decodes as usual and gets the decoder's answer). */
int ews_json_scan_type(const char *text, size_t n, const char **type, size_t *type_len);

#endif
