-- wrk script: POST a rotating set of bodies, each request with a fresh (never replayed) JWT.
-- args: <tokens file, or /dev/null for no Authorization header> <body file> [<body file> ...]
local tokens, bodies, i = {}, {}, 0
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  for k = 2, #args do
    local f = assert(io.open(args[k], "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
end
function request()
  i = i + 1
  local headers = {["Content-Type"] = "application/json"}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[((i - 1) % #tokens) + 1] end
  return wrk.format("POST", nil, headers, bodies[((i - 1) % #bodies) + 1])
end
