"""Streamlit entry point. Pages are added as the app grows."""

import streamlit as st

st.set_page_config(page_title="EdgeDL Advisor", layout="wide")
st.title("EdgeDL Advisor")
st.info("The app is coming: knowledge-base exploration and the design advisor land here next.")
