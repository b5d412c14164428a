-- wrk script: POST the body in $BENCH_BODY_FILE to $BENCH_PATH, optionally with an Accept
-- header ($BENCH_ACCEPT) and a pause between a connection's requests ($BENCH_DELAY_MS on
-- average), which caps the offered load at about connections * 1000 / delay requests per
-- second. The pause is drawn uniformly from [0.5, 1.5] x the mean, so that connections do not
-- stay in step and arrive in bursts.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/generate"
wrk.headers["Content-Type"] = "application/json"
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  function delay()
    return pause * (0.5 + math.random())
  end
end
