#!/usr/bin/env python3
"""appidle.py BIN N SECS: the relay's CPU and requests for N unlocked, idle `strongroom app`
processes over SECS seconds, and the latency from `strongroom send` returning to the message
in one app's event log. Used for docs/PERFORMANCE.md (tenth sitting). Works in ./appidle-work."""
import json, os, re, shutil, subprocess, sys, time, urllib.request, http.cookiejar, socket

BIN, N, SECS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
W = os.environ.get('WORK', os.path.join(os.getcwd(), 'appidle-work'))
shutil.rmtree(W, ignore_errors=True); os.makedirs(W)
PORT = 18281
URL = f'http://127.0.0.1:{PORT}'
env = dict(os.environ, STRONGROOM_PASSPHRASE='profile passphrase 1', STRONGROOM_PASSWORD='account password 1',
           STRONGROOM_NETWORK_KEY_PASSPHRASE='network key passphrase', STRONGROOM_SERVER=URL)
open(f'{W}/bench.toml','w').write('[limits]\nauth_per_minute = 1000000\nsends_per_second = 1000000\nmax_connections_per_ip = 1000000\none_time_claims_per_hour = 1000000\n')
srv = subprocess.Popen(['taskset','-c','0',BIN,'server','--config',f'{W}/bench.toml','--listen',f'127.0.0.1:{PORT}','--data-dir',f'{W}/data'],
                       stdout=open(f'{W}/server.log','w'), stderr=subprocess.STDOUT)
for _ in range(100):
    try: urllib.request.urlopen(URL + '/metrics'); break
    except Exception: time.sleep(0.1)
def run(*args, check=True):
    r = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, cwd=W)
    if check and r.returncode != 0:
        subprocess.run(['pkill','-f',BIN]); raise SystemExit(f'{args}: {r.stderr}')
    return r
out = run('admin','network','create','--name','Acme','--data-dir',f'{W}/data','--key-file',f'{W}/acme.key','--json')
invite = json.loads(out.stdout)['admin_invite']
run('enrol','--profile',f'{W}/alice','--invite',invite,'--username','alice')
for i in range(1, N):
    inv = run('invite','--profile',f'{W}/alice','--json').stdout
    inv = json.loads(inv)['invite']
    run('enrol','--profile',f'{W}/u{i}','--invite',inv,'--username',f'u{i}')
inv = json.loads(run('invite','--profile',f'{W}/alice','--json').stdout)['invite']
run('enrol','--profile',f'{W}/s','--invite',inv,'--username','sender')
run('send','--profile',f'{W}/s','--to','alice','hello')
profiles = [f'{W}/alice'] + [f'{W}/u{i}' for i in range(1, N)]
apps = []
for p in profiles:
    a = subprocess.Popen([BIN,'app','--profile',p,'--no-open'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = a.stdout.readline()
    m = re.search(r'http://127\.0\.0\.1:(\d+)/\?k=(\w+)', line)
    port, k = m.group(1), m.group(2)
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw): return None
    op = urllib.request.build_opener(NoRedirect)
    try: op.open(f'http://127.0.0.1:{port}/?k={k}')
    except urllib.error.HTTPError as e:
        cookie = e.headers['set-cookie'].split(';')[0]; csrf = e.headers['location'].split('#t=')[1]
    def call(method, path, body=None, port=port, cookie=cookie, csrf=csrf):
        req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', method=method,
              data=None if body is None else json.dumps(body).encode(),
              headers={'Cookie': cookie, 'X-CSRF-Token': csrf, 'Content-Type': 'application/json'})
        return json.loads(urllib.request.urlopen(req).read() or b'null')
    call('POST', '/api/v1/unlock', {'passphrase': env['STRONGROOM_PASSPHRASE']})
    apps.append((a, call))
def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
def responses():
    t = urllib.request.urlopen(URL + '/metrics').read().decode()
    return sum(int(l.rsplit(' ',1)[1]) for l in t.splitlines() if l.startswith('strongroom_http_responses_total'))
time.sleep(5)
c0, r0, t0 = cpu(srv.pid), responses(), time.time()
time.sleep(SECS)
c1, r1, t1 = cpu(srv.pid), responses(), time.time()
el = t1 - t0
# Latency: u1 sends to alice; alice's app event log shows it.
call = apps[0][1]
lat = []
for i in range(5):
    last = max([e['id'] for e in call('GET', '/api/v1/events')['events']] or [0])
    run('send','--profile',f'{W}/s','--to','alice',f'ping {i}')
    t = time.time()
    while True:
        ev = call('GET', f'/api/v1/events?after={last}')['events']
        if any(e['kind'].get('type') == 'message' for e in ev): break
        if time.time() - t > 60: lat.append(None); break
        time.sleep(0.005)
    lat.append(round((time.time() - t) * 1000))
    time.sleep(0.3)
res = {'apps': N, 'secs': round(el,1), 'server_cpu_ms_per_s': round((c1-c0)*1000/el, 2),
       'server_cpu_us_per_app_per_s': round((c1-c0)*1e6/el/N, 1),
       'responses_per_s': round((r1-r0)/el, 2), 'latency_ms_after_send_returned': lat}
print(json.dumps(res))
for a, _ in apps: a.kill()
srv.kill()
