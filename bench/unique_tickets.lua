-- wrk script: every request is a distinct Freshdesk ticket (unique ticket_id), so ticketbridge
-- never sees a duplicate. Usage: wrk ... -s bench/unique_tickets.lua URL -- <base id>
-- Thread n numbers its tickets base + n * 100000000 + 1, 2, 3...; the printed summary line
-- (WRK_JSON ...) is what bench/run.py reads.

local threads = {}
local counter = 0
local first = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer benchsecret"

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  first = tonumber(args[1] or "1000000000") + tid * 100000000
end

function request()
  counter = counter + 1
  local id = string.format("%d", first + counter)
  local body = '{"freshdesk_webhook": {"triggered_event": "{ticket_action:created}", '
    .. '"ticket_id": "' .. id .. '", '
    .. '"ticket_url": "https://acme.freshdesk.com/a/tickets/' .. id .. '", '
    .. '"ticket_subject": "bench", "ticket_status": "Open", "ticket_priority": "Urgent"}}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
