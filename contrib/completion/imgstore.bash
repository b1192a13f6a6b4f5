# bash completion for imgstore (issue #12), installed as
# share/bash-completion/completions/imgstore.
#
# Nothing here is a copy of the help: commands, each command's options and subcommands are
# asked of the binary itself (imgstore __complete), which reads its own --help, and image
# names, channels and versions come from the local store's trees and indexes (one read each,
# never a walk of the versions). --repo on the command line being completed is honoured.
_imgstore()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local bin=${COMP_WORDS[0]} cmd=${COMP_WORDS[1]} i word value
    local -a repo=() positional=() options=()

    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$("$bin" __complete commands 2>/dev/null) --help --version" -- "$cur"))
        return
    fi
    mapfile -t options < <("$bin" __complete options "$cmd" 2>/dev/null)
    # the positional words before the cursor, skipping options and their values
    for ((i = 2; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == --repo ]]; then
            repo=(--repo "${COMP_WORDS[i+1]}")
        fi
        if [[ $word == -* ]]; then
            for value in "${options[@]}"; do
                [[ $value == "$word "* ]] && ((i++)) && break
            done
        else
            positional+=("$word")
        fi
    done
    # the value of an option: what its help calls it says what it is
    for value in "${options[@]}"; do
        [[ $value == "$prev "* ]] || continue
        case ${value#* } in
        C) COMPREPLY=($(compgen -W "$("$bin" __complete channels "${positional[0]%%@*}" "${repo[@]}" 2>/dev/null)" -- "$cur")) ;;
        VERSION) COMPREPLY=($(compgen -W "$("$bin" __complete versions "${positional[0]%%@*}" "${repo[@]}" 2>/dev/null)" -- "$cur")) ;;
        PATH) COMPREPLY=($(compgen -d -- "$cur")) ;;
        *FILE* | *DIR* | PEM | F) COMPREPLY=($(compgen -f -- "$cur")) ;;
        # in lower case, the value is literal: its alternatives ("--sort time|name")
        [a-z]*) value=${value#* } && COMPREPLY=($(compgen -W "${value//|/ }" -- "$cur")) ;;
        esac
        return
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${options[*]%% *}" -- "$cur"))
        return
    fi
    local subcommands
    subcommands=$("$bin" __complete subcommands "$cmd" 2>/dev/null)
    if [[ -n $subcommands ]]; then
        [[ ${#positional[@]} -eq 0 ]] && COMPREPLY=($(compgen -W "$subcommands" -- "$cur"))
        [[ ${#positional[@]} -gt 0 && ${positional[0]} == show && $cmd == key ]] && COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    case $cmd in
    push) COMPREPLY=($(compgen -f -- "$cur")) ;;
    pull | ls | show | diff | sign | verify | history | deploy | rollback | watch)
        if [[ $cmd == deploy && ${#positional[@]} -eq 1 ]]; then
            COMPREPLY=($(compgen -W "$("$bin" __complete versions "${positional[0]}" "${repo[@]}" 2>/dev/null)" -- "$cur"))
        elif [[ $cur == *@* ]]; then
            local name=${cur%%@*}
            COMPREPLY=($(compgen -P "$name@" -W "$("$bin" __complete versions "$name" "${repo[@]}" 2>/dev/null)" -- "${cur#*@}"))
        elif [[ ${#positional[@]} -eq 0 || $cmd == diff ]]; then
            COMPREPLY=($(compgen -W "$("$bin" __complete images "${repo[@]}" 2>/dev/null)" -- "$cur"))
        fi
        ;;
    help) COMPREPLY=($(compgen -W "$("$bin" __complete commands 2>/dev/null)" -- "$cur")) ;;
    esac
}
complete -F _imgstore imgstore
