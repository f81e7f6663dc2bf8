"""GeoScout Streamlit app (placeholder page; the full app is tracked in its own issue).

Run with `make app` or `.venv/bin/streamlit run app.py`. The page asks one question through
the same entry point as the CLI and shows the cited answer and the evidence.
"""

from __future__ import annotations

import streamlit as st

from agents.service import Assistant
from agents.settings import Settings

st.set_page_config(page_title="GeoScout", page_icon="🛰️")
st.title("GeoScout")
st.caption("Ask a geospatial question in plain words; every number cites its evidence.")


@st.cache_resource
def _assistant() -> Assistant:
    return Assistant(Settings())


question = st.chat_input("How much open water is there around Accomac, Virginia?")
if question:
    with st.status("Working…", expanded=True) as status:
        bundle = None
        for kind, item in _assistant().stream(question):
            if kind == "update":
                for node in item:
                    st.write(f"{node} done")
            else:
                bundle = item
        status.update(label="Done", state="complete")
    if bundle is not None:
        if bundle.refused:
            st.warning(bundle.refusal_reason)
        else:
            st.markdown(bundle.answer.text.replace("<", "&lt;"))
            for c in bundle.answer.caveats:
                st.caption(c)
            for ev in bundle.evidence:
                with st.expander(f"{ev.id} · {ev.kind} · {ev.title}"):
                    st.json(ev.model_dump(mode="json"))
