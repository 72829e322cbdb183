-- wirestack post-dissector for Wireshark and tshark (3.x, 4.x).
--
-- wirestack writes one packet comment per Python socket call a packet is paired with:
--
--   <sentence for people> [wirestack key=value key="quoted value" ...]
--
-- Keys: call (id), op (connect, send, ...), role (sent, received, kernel), namespace and error (when the call
-- failed: the error's namespace, "errno", "openssl", "eai", "h_errno", "timeout", "python", and its name in it),
-- errno and errname (only for a kernel errno), socket, thread, frame (repeated, innermost first: "socket.py:836
-- create_connection"). Values are bare, or double-quoted with backslash escapes; inside quotes every bracket is
-- escaped, so the marker " [wirestack " can only be wirestack's own, the last one in the comment. Numbers out
-- of range are left out. This script turns them into fields you can filter on and add as columns:
--
--   wirestack.call  wirestack.op  wirestack.role  wirestack.namespace  wirestack.error  wirestack.errno
--   wirestack.errname  wirestack.socket  wirestack.thread  wirestack.frame
--
--   tshark -X lua_script:wirestack.lua -r refused.pcapng -Y 'wirestack.errno == 111'
--   wireshark display filter: wirestack.frame contains "smtplib"
--
-- Install: `wirestack wireshark --install` copies it to your personal Lua plugin folder.

local proto = Proto("wirestack", "wirestack: the Python call behind the packet")

local fields = {
    call = ProtoField.uint32("wirestack.call", "Call"),
    op = ProtoField.string("wirestack.op", "Operation"),
    role = ProtoField.string("wirestack.role", "Role"),
    namespace = ProtoField.string("wirestack.namespace", "Error namespace"),
    error = ProtoField.string("wirestack.error", "Error"),
    errno = ProtoField.uint32("wirestack.errno", "errno"),
    errname = ProtoField.string("wirestack.errname", "errno name"),
    socket = ProtoField.uint32("wirestack.socket", "Socket"),
    thread = ProtoField.string("wirestack.thread", "Thread"),
    frame = ProtoField.string("wirestack.frame", "Frame"),
}
local numeric = { call = true, errno = true, socket = true }
proto.fields = { fields.call, fields.op, fields.role, fields.namespace, fields.error, fields.errno, fields.errname,
                 fields.socket, fields.thread, fields.frame }

local comment_field = Field.new("frame.comment")
local MARK = " [wirestack "

-- "k=v k=\"a b\"" -> { {k, v}, {k, "a b"} }
local function parse(tail)
    local out, i, n = {}, 1, #tail
    while i <= n do
        local s = tail:find("[^ ]", i)
        if not s or tail:sub(s, s) == "]" then break end
        local eq = tail:find("=", s, true)
        if not eq then break end
        local key, value = tail:sub(s, eq - 1), nil
        if tail:sub(eq + 1, eq + 1) == '"' then
            local j, buf = eq + 2, {}
            while j <= n do
                local c = tail:sub(j, j)
                if c == "\\" then
                    buf[#buf + 1] = tail:sub(j + 1, j + 1)
                    j = j + 2
                elseif c == '"' then
                    break
                else
                    buf[#buf + 1] = c
                    j = j + 1
                end
            end
            value, i = table.concat(buf), j + 1
        else
            local e = tail:find("[ %]]", eq + 1) or (n + 1)
            value, i = tail:sub(eq + 1, e - 1), e
        end
        out[#out + 1] = { key, value }
    end
    return out
end

function proto.dissector(tvb, pinfo, tree)
    local comments = { comment_field() }
    for _, fi in ipairs(comments) do
        local text = tostring(fi.value)
        local at, from = nil, 1
        while true do  -- the last occurrence: the sentence before it is free text
            local found = text:find(MARK, from, true)
            if not found then break end
            at, from = found, found + 1
        end
        if at then
            local item = tree:add(proto, tvb(0, 0), "wirestack: " .. text:sub(1, at - 1))
            for _, kv in ipairs(parse(text:sub(at + #MARK))) do
                local field = fields[kv[1]]
                if field then
                    if numeric[kv[1]] then
                        local number = tonumber(kv[2])
                        if number and number >= 0 and number <= 4294967295 and number == math.floor(number) then
                            item:add(field, tvb(0, 0), number)
                        end
                    else
                        item:add(field, tvb(0, 0), kv[2])
                    end
                end
            end
        end
    end
end

register_postdissector(proto)
