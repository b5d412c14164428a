-- wrk script: POST /generate n=1 for digits-cvae, cycling through the labels
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/generate", nil, string.format('{"model":"digits-cvae","n":1,"label":"%d"}', i % 10))
end
