// Pod picker: namespace → pod → container, with phase and age, searchable. Pods and containers that are not
// running are listed with the reason and no link; the server refuses them as well.
(() => {
  const select = document.getElementById("k8s-namespace");
  if (!select) return;
  const search = document.getElementById("k8s-search");
  const status = document.getElementById("k8s-status");
  const body = document.querySelector("#k8s-pods tbody");
  let pods = [];

  function why(pod, container) {
    if (pod.deleting) return "the pod is being deleted";
    if (pod.phase !== "Running") return `the pod is ${pod.phase}, not Running`;
    if (container.state !== "running") return `not running (${container.state})`;
    return "";
  }

  function render() {
    const [clusterId, namespace] = select.value.split("/");
    const q = search.value.trim().toLowerCase();
    body.textContent = "";
    const shown = pods.filter((p) => !q || p.name.includes(q) || p.containers.some((c) => c.name.includes(q))
      || Object.entries(p.labels).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(q)));
    for (const pod of shown) {
      const tr = document.createElement("tr");
      tr.dataset.pod = pod.name;
      Bastion.cell(tr, pod.name, "strong");
      Bastion.cell(tr, pod.deleting ? "Terminating" : pod.phase);
      Bastion.cell(tr, pod.age);
      const td = document.createElement("td");
      for (const c of pod.containers) {
        const reason = why(pod, c);
        const span = document.createElement("span");
        span.className = "k8s-container";
        span.dataset.container = c.name;
        if (reason) {
          span.textContent = `${c.name}: cannot open, ${reason}`;
          span.classList.add("muted");
        } else {
          const a = document.createElement("a");
          a.className = "button primary";
          a.href = `/k8s/${encodeURIComponent(clusterId)}/${encodeURIComponent(namespace)}/${encodeURIComponent(pod.name)}`
            + `?container=${encodeURIComponent(c.name)}`;
          a.textContent = `Open ${c.name}`;
          span.appendChild(a);
        }
        td.appendChild(span);
        td.appendChild(document.createTextNode(" "));
      }
      tr.appendChild(td);
      body.appendChild(tr);
    }
    status.textContent = `${shown.length} of ${pods.length} pod${pods.length === 1 ? "" : "s"}`;
  }

  async function load() {
    const [clusterId, namespace] = select.value.split("/");
    status.textContent = "loading…";
    body.textContent = "";
    try {
      const data = await Bastion.api("GET", `/api/k8s/${encodeURIComponent(clusterId)}/${encodeURIComponent(namespace)}/pods`);
      pods = data.items;
      render();
    } catch (err) {
      pods = [];
      status.textContent = err.message;
    }
  }

  select.addEventListener("change", load);
  search.addEventListener("input", render);
  load();
})();
