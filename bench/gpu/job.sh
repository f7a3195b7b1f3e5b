#!/bin/bash
# Device-side orchestration, started detached (setsid) so that it outlives one `run` call:
#   bash bench/gpu/job.sh start STAGES...   stages: wheels build trans7b trans72b ...
#   end to end (issue 9): wheels buildbg w7b cvreal waitbuild q7b audio e2e t7b
#   GPU sharing (issue 9): ... audio e2e e2eone e2emps (translate idle during the first chunk; CUDA MPS)
#   the hold (issue 9): ... audio e2e1 e2eoff e2ey12 (translate's yield_to_synthesize off; first hop 12)
#   torch.compile (issue 9): ... flowtest ttfacomp ... audio e2e1 e2ecf e2ecb (compile_flow, + compile_lm)
#   bash bench/gpu/job.sh wait SECONDS      wait for the job, then copy results to $OUT
W=/tmp/gpu; mkdir -p $W
cvreal() {  # the real-size random CosyVoice2 folder, once
  [ -e $W/cosyvoice2-real/llm.pt ] || python3 -c "import sys; sys.path.insert(0, '.'); from pathlib import Path; from nodes.synthesize.cosyvoice.tiny import write_random_cosyvoice2 as w; w(Path('$W/cosyvoice2-real'), size='real')"
}
e2e() {  # e2e ROUNDS: the pipeline end to end, 8 sentences a round (bench/gpu/e2e.sh)
  bash bench/gpu/e2e.sh $W $W/qwen2.5-7b-random-Q4_K_M.gguf $W/cosyvoice2-real ${RESULTS:-$W/results} "$1" 8
}
mps_up() {  # CUDA MPS on a private pipe directory: this job's CUDA processes share one server
  command -v nvidia-cuda-mps-control >/dev/null || { echo "no nvidia-cuda-mps-control on PATH"; return 1; }
  export CUDA_MPS_PIPE_DIRECTORY=$W/mps/pipe CUDA_MPS_LOG_DIRECTORY=$W/mps/log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-smi --query-gpu=name,compute_mode --format=csv
  nvidia-cuda-mps-control -d
}
mps_down() {
  echo get_server_list | nvidia-cuda-mps-control; echo quit | nvidia-cuda-mps-control; sleep 1
  cp -r $W/mps/log ${RESULTS:-$W/results}/mps-log
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
case "$1" in
start)
  shift
  rm -f $W/job.done
  setsid nohup bash bench/gpu/job.sh run "$@" > $W/job.log 2>&1 < /dev/null &
  echo "started $*";;
run)
  shift
  export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
  mkdir -p $W/results
  for s in "$@"; do
    echo "=== $(date +%T) $s"; rm -f $W/$s.rc
    case $s in
      wheels) python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; rc=$?;;
      build) bash bench/gpu/build_llama.sh $PWD/.device/llama-src.tgz > $W/build.log 2>&1 && \
             python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/llama-wheel/*.whl; rc=$?;;
      buildbg) (nice -n 10 bash bench/gpu/build_llama.sh $PWD/.device/llama-src.tgz > $W/build.log 2>&1 && \
             python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/llama-wheel/*.whl; \
             echo $? > $W/buildbg.done) & rc=0;;
      waitbuild) while [ ! -e $W/buildbg.done ]; do sleep 5; done; rc=$(cat $W/buildbg.done);;
      graphtest) python3 -m pytest -q -p no:cacheprovider tests/test_cosyvoice_graph.py > $W/results/graphtest.txt 2>&1; rc=$?; tail -5 $W/results/graphtest.txt;;
      synth) python3 bench/synth_gpu.py --work $W --bandwidth-gbs 2992.3 --runs 10 && cp $W/synth-gpu-real.json $W/results/ && \
             python3 bench/synth.py --size real --runs 5 --json $W/results/synth-bench-real-cuda.json; rc=$?;;
      flowprof) cvreal
             python3 bench/flow_profile.py --folder $W/cosyvoice2-real --out $W/results/flow-profile.json; rc=$?;;
      w7b) python3 bench/translate_gpu.py --work $W --vocab .device/vocab.tiktoken --stages 7b-write; rc=$?;;
      q7b) python3 bench/translate_gpu.py --work $W --vocab .device/vocab.tiktoken --stages 7b-quantize; rc=$?;;
      cvreal) cvreal; rc=$?;;
      audio) source bench/gpu/audio_up.sh $PWD/.device/audio.tgz $W/audio; rc=$?
             python3 bench/gpu/audio_check.py > $W/results/audio-check.txt 2>&1; echo "audio check rc=$?"; cat $W/results/audio-check.txt;;
      e2e) e2e 2; rc=$?;;
      e2e1) e2e 1; rc=$?;;
      e2eone) E2E_TAG=one E2E_TRANSLATE="max_tokens = 9" e2e 1; rc=$?;;  # no second clause to decode
      host) { nproc; lscpu; nvidia-smi; } > $W/results/host.txt 2>&1; rc=0; grep -iE "^CPU\(s\)|Thread|Core|Socket|Model name" $W/results/host.txt;;
      e2eoff) E2E_TAG=off E2E_TRANSLATE="yield_to_synthesize = false" e2e 1; rc=$?;;
      e2ey12) E2E_TAG=y12 E2E_SYNTHESIZE="first_hop_tokens = 12" e2e 1; rc=$?;;
      e2ecf) E2E_TAG=cf E2E_SYNTHESIZE="compile_flow = true" e2e 1; rc=$?;;  # the flow's blocks compiled
      e2ecb) E2E_TAG=cb E2E_SYNTHESIZE=$'compile_flow = true\ncompile_lm = true' e2e 1; rc=$?;;
      flowtest) python3 -m pytest -q -p no:cacheprovider tests/test_cosyvoice_flow_graph.py > $W/results/flowtest.txt 2>&1; rc=$?; tail -15 $W/results/flowtest.txt; rc=0;;
      ttfacomp) cvreal; timeout 600 python3 bench/ttfa_gpu.py --work $W --out $W/results --runs 10 --skip-eager --skip-upstream-sampler --hops 12 --cuts hift,compile,compile-both; rc=$?;;
      e2emps) if mps_up; then E2E_TAG=mps e2e 1; rc=$?; mps_down; else rc=0; fi;;
      t7b) python3 bench/translate_gpu.py --work $W --vocab .device/vocab.tiktoken --stages bandwidth,bench7b,report --results $W/results; rc=$?;;
      trans7b) python3 bench/translate_gpu.py --work $W --vocab .device/vocab.tiktoken --stages bandwidth,7b,bench7b,report --results $W/results; rc=$?;;
      trans72b) python3 bench/translate_gpu.py --work $W --vocab .device/vocab.tiktoken --stages 72b,bench72b,report --results $W/results; rc=$?;;
      *) echo "unknown stage $s"; rc=2;;
    esac
    echo $rc > $W/$s.rc; echo "=== $(date +%T) $s rc=$rc"
    [ $rc = 0 ] || [ $s = graphtest ] || [ $s = audio ] || break  # no audio: e2e still runs (WAV sink)
  done
  touch $W/job.done;;
wait)
  end=$((SECONDS + $2))
  while [ ! -e $W/job.done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  [ -e $W/job.done ] && echo "JOB DONE" || echo "JOB STILL RUNNING"
  tail -c 6000 $W/job.log; echo; tail -c 1500 $W/build.log 2>/dev/null
  cp $W/job.log $OUT/ 2>/dev/null; [ -d $W/results ] && tar czf $OUT/results.tgz -C $W results state.json 2>/dev/null
  gzip -c $W/build.log > $OUT/build.log.gz 2>/dev/null
  ;;
esac
