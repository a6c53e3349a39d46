"""The outcomes page (being built)."""

import streamlit as st

st.title("outcomes")
