"""The ScienceWorld workload of `cargo bench -p agentr-envs --bench sciworld` on the Python
`scienceworld` package: the same games and gold actions, reset then every action, and the
JVM's resident memory. Prints one JSON object per way of driving it:

* `package`: `env.load` + `env.reset()`, then `env.step(action)`, the API AgentGym's server
  calls. Its `step` also fetches the look text, the inventory, the task description and every
  valid action after each action; one pass (it is slow).
* `bare calls`: the same py4j gateway, calling only what agentr calls (`load`, `step`,
  `getScore`, `getCompleted`); median of 3 passes.

Usage: sciworld_python.py WORKLOAD.json
"""
import json
import sys
import time

from scienceworld import ScienceWorldEnv


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def package_pass(env, games):
    reset_s = step_s = 0.0
    for game in games:
        started = time.perf_counter()
        env.load(game["name"], game["variation"], "")
        env.reset()
        reset_s += time.perf_counter() - started
        started = time.perf_counter()
        for action in game["actions"]:
            env.step(action)
        step_s += time.perf_counter() - started
    return reset_s, step_s


def bare_pass(env, games):
    server = env.server
    reset_s = step_s = 0.0
    for game in games:
        started = time.perf_counter()
        server.load(game["name"], game["variation"], "", False)
        server.getTaskDescription()
        server.step("look around")
        reset_s += time.perf_counter() - started
        started = time.perf_counter()
        for action in game["actions"]:
            server.step(action)
            server.getScore()
            server.getCompleted()
        step_s += time.perf_counter() - started
    return reset_s, step_s


def report(name, games, passes, env):
    passes.sort(key=lambda p: p[0] + p[1])
    reset_s, step_s = passes[len(passes) // 2]
    steps = sum(len(g["actions"]) for g in games)
    print(json.dumps({
        "implementation": f"python scienceworld==1.2.3, {name}",
        "games": len(games),
        "steps": steps,
        "passes": len(passes),
        "median_pass": {"reset_seconds": reset_s, "step_seconds": step_s},
        "steps_per_second": steps / step_s,
        "episodes_per_second": len(games) / (reset_s + step_s),
        "jvm_resident_mib": resident_mib(env._gateway.java_process.pid),
    }), flush=True)


def main():
    games = json.load(open(sys.argv[1]))
    env = ScienceWorldEnv("", envStepLimit=10_000)
    report("bare calls", games, [bare_pass(env, games) for _ in range(3)], env)
    report("package", games, [package_pass(env, games)], env)
    env.close()


if __name__ == "__main__":
    main()
