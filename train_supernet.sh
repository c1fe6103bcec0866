#!/usr/bin/env bash
# Train the ResNet48 supernet on every device of this machine (or of several machines).
#
#   bash train_supernet.sh [CONFIG.yaml] [key=value ...] [--flag value ...]
#   bash train_supernet.sh LAUNCHER_OPTIONS -- [CONFIG.yaml] [key=value ...]
#
# With no arguments it trains the embedded demo (configs/demo.yaml, Fashion-MNIST). The config
# and overrides go to `train_supernet.py` (see `python train_supernet.py --help`); e.g.
#   bash train_supernet.sh configs/imagenet.yaml data.image_dir=/data/ILSVRC2012 supernet.epochs=120
#
# Processes are started by `python -m paddle.distributed.launch`:
#   GPUs    one process per visible GPU (the launcher reads CUDA_VISIBLE_DEVICES); pick cards with
#           GPUS=0,1 or `--gpus 0,1 --`.
#   CPU     N gloo processes, N = NPROC env, else supernet.launch.cpu_procs (default 1).
#           (With device=cpu on a CUDA build, the launcher would bind ranks to GPUs: use 1 process.)
#   nodes   launcher options go before `--` or in LAUNCH_ARGS, e.g. on each of two machines:
#             bash train_supernet.sh --master 10.0.0.1:8090 --nnodes 2 -- configs/imagenet.yaml ...
#           (the checkpoint directory must be shared, or rank 0's copied, for resume.)
# Launcher logs go to OUTPUT_DIR/launch_logs (OUTPUT_DIR = supernet.output_dir).
# Rerunning the same command resumes from the newest checkpoint in OUTPUT_DIR. One run writes an
# OUTPUT_DIR at a time: a second one stops at once, naming the first's pid and host. Stop a run with
# Ctrl-C or `kill PID` (this script's pid): its workers stop with it.
#
# Environment: PYTHON (default python3), GPUS, NPROC, LAUNCH_ARGS (word-split), OMP_NUM_THREADS
# (default: this machine's cores / the processes started here).
set -euo pipefail

PY="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"

launch_opts=()
train_args=("$@")
for ((i = 0; i < $#; i++)); do
    if [[ "${train_args[$i]}" == "--" ]]; then
        launch_opts=("${train_args[@]:0:$i}")
        train_args=("${train_args[@]:$((i + 1))}")
        break
    fi
done
if [[ -n "${LAUNCH_ARGS:-}" ]]; then
    read -r -a extra <<< "${LAUNCH_ARGS}"
    launch_opts+=("${extra[@]}")
fi

# Output dir, CPU process count and device from the resolved config (no Paddle import); bad values
# and an OUTPUT_DIR another run is writing stop here, before the launcher starts.
plan="$("${PY}" "${ROOT}/train_supernet.py" --plan ${train_args[@]+"${train_args[@]}"})"
eval "${plan}"

has_opt() {
    local o
    for o in ${launch_opts[@]+"${launch_opts[@]}"}; do
        for name in "$@"; do
            [[ "${o}" == "${name}" || "${o}" == "${name}="* ]] && return 0
        done
    done
    return 1
}

procs=""  # processes the launcher starts on this machine (unknown when launcher options choose)
if ! has_opt --devices --gpus --nproc_per_node; then
    gpu_count="$("${PY}" -c 'import paddle; print(paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0)' 2>/dev/null || echo 0)"
    if [[ -n "${GPUS:-}" && "${DEVICE}" != cpu ]]; then
        launch_opts+=(--devices "${GPUS}")
        IFS=, read -r -a cards <<< "${GPUS}"
        procs="${#cards[@]}"
    elif [[ "${gpu_count}" -gt 0 && "${DEVICE}" != cpu ]]; then
        procs="${gpu_count}"  # the launcher starts one process per visible GPU
    else
        procs="${NPROC:-${CPU_PROCS}}"
        launch_opts+=(--nproc_per_node "${procs}")
    fi
fi
# The launcher imports Paddle, which pins an unset OMP_NUM_THREADS to 1 for every worker: share
# the cores among the workers instead, by the entry points' own rule (an explicit value wins).
if [[ -z "${OMP_NUM_THREADS:-}" && -n "${procs}" ]]; then
    OMP_NUM_THREADS="$(PADDLE_LOCAL_SIZE="${procs}" "${PY}" -c \
        'from runtime.cpu_speed import default_threads; print(default_threads())')"
    export OMP_NUM_THREADS
fi
log_dir="${OUTPUT_DIR}/launch_logs"
if has_opt --log_dir; then
    for ((i = 0; i < ${#launch_opts[@]}; i++)); do
        case "${launch_opts[$i]}" in
            --log_dir=*) log_dir="${launch_opts[$i]#--log_dir=}" ;;
            --log_dir) log_dir="${launch_opts[$((i + 1))]:-}" ;;
        esac
    done
else
    launch_opts+=(--log_dir "${log_dir}")
fi

# The launcher starts each worker in a session of its own: a signal to this script or its process
# group never reaches them. So the launcher runs in the background and INT/TERM/HUP are passed on
# to it and to every worker's process group; what is left after 15 s is killed.
launcher=""
children() {  # pids whose parent is $1 (from /proc: procps may be missing)
    local stat line fields
    for stat in /proc/[0-9]*/stat; do
        { line="$(< "${stat}")"; } 2>/dev/null || continue
        read -r -a fields <<< "${line##*) }"
        [[ "${fields[1]:-}" == "$1" ]] && echo "${stat//[^0-9]/}"
    done
    return 0
}
stop_run() {  # $1 signal name, $2 exit status
    trap '' INT TERM HUP
    echo "train_supernet.sh: SIG$1: stopping the launcher and its workers" >&2
    local workers="" w t alive
    if [[ -n "${launcher}" ]]; then
        workers="$(children "${launcher}")"
        kill -TERM "${launcher}" 2>/dev/null || true
    fi
    for w in ${workers}; do kill -TERM -- "-${w}" 2>/dev/null || kill -TERM "${w}" 2>/dev/null || true; done
    for ((t = 0; t < 150; t++)); do
        alive=0
        for w in ${launcher} ${workers}; do kill -0 "${w}" 2>/dev/null && alive=1; done
        [[ "${alive}" == 0 ]] && break
        sleep 0.1
    done
    for w in ${workers}; do kill -KILL -- "-${w}" 2>/dev/null || true; done
    [[ -z "${launcher}" ]] || kill -KILL "${launcher}" 2>/dev/null || true
    echo "train_supernet.sh: stopped; rerun the same command to resume from the last checkpoint in ${OUTPUT_DIR}" >&2
    exit "$2"
}
trap 'stop_run INT 130' INT
trap 'stop_run TERM 143' TERM
trap 'stop_run HUP 129' HUP

mkdir -p "${OUTPUT_DIR}"
echo "train_supernet.sh: OMP_NUM_THREADS=${OMP_NUM_THREADS:-} ${PY} -m paddle.distributed.launch ${launch_opts[*]} ${PY} -u ${ROOT}/train_supernet.py ${train_args[*]-}" >&2
echo "train_supernet.sh: stop the run with Ctrl-C or kill $$ (its workers stop with it); rerunning the same command resumes it" >&2
"${PY}" -m paddle.distributed.launch "${launch_opts[@]}" "${PY}" -u "${ROOT}/train_supernet.py" ${train_args[@]+"${train_args[@]}"} &
launcher=$!
status=0
wait "${launcher}" || status=$?
if [[ "${status}" -ne 0 ]]; then
    # The workers' own messages are in their logs, above them the launcher's: end on the fatal one.
    error=""
    for log in "${log_dir}/workerlog.0" "${log_dir}"/workerlog.*; do
        [[ -f "${log}" ]] || continue
        error="$(grep -a '^error: ' "${log}" | tail -n 1 || true)"
        [[ -n "${error}" ]] && break
    done
    echo "train_supernet.sh: the launcher exited with status ${status} (worker logs: ${log_dir})" >&2
    [[ -n "${error}" ]] && echo "${error}" >&2
    exit "${status}"
fi
